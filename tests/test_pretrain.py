"""The pretraining stage: its steps, resume after an interruption, the cache shared by runs, and the
label-blind initial set it feeds."""

import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from aral_tf import pretrain
from aral_tf.distribution import make_strategy
from aral_tf.model import ARALModel
from aral_tf.run_state import RunStateError
from tests.helpers import tiny_config, tiny_images

POOL = tiny_images(24)


class Interrupted(Exception):
    pass


def fresh_model():
    keras.utils.set_random_seed(3)
    model = ARALModel(tiny_config())
    model.initialize_from_data(POOL[:8])
    return model


def stage(directory, cache_dir=None, steps=4, seed=0, kept=pretrain.NETWORKS):
    return pretrain.PretrainStage(directory, cache_dir, "pool-sha", steps, batch_size=4, seed=seed,
                                  checkpoint_every=2, verbose=False, kept=kept)


def weights(model):
    return [weight.numpy().copy() for weight in model.weights]


def assert_same_weights(first, second):
    for one, other in zip(first, second):
        np.testing.assert_array_equal(one, other)


def pretrained(directory, cache_dir=None, log=None, **stage_options):
    model = fresh_model()
    stage(directory, cache_dir, **stage_options).run(model, POOL, make_strategy(), log=log or (lambda message: None))
    return model


def test_stage_trains_and_makes_its_weights_the_start_weights():
    with tempfile.TemporaryDirectory() as directory:
        model = pretrained(directory)
        assert os.path.isdir(os.path.join(directory, pretrain.RUN_SUBDIR, "checkpoints"))
        trained = weights(model)
        assert any(not np.array_equal(one, other) for one, other in zip(trained, weights(fresh_model())))
        np.testing.assert_array_equal(model.start_weights_of("discriminator")[0].numpy(),
                                      model.discriminator.weights[0].numpy())
        # The first cycle's optimizers start afresh (D's moving average too).
        for optimizer in (model.discriminator_optimizer, model.encoder_generator_optimizer):
            assert int(optimizer.iterations.numpy()) == 0


def test_networks_not_kept_start_from_their_initial_weights():
    with tempfile.TemporaryDirectory() as directory:
        model = fresh_model()
        initial = [weight.numpy().copy() for weight in model.discriminator.weights]
        stage(directory, kept=("encoder", "generator")).run(model, POOL, make_strategy(), log=lambda message: None)
        assert_same_weights([weight.numpy() for weight in model.discriminator.weights], initial)
        assert_same_weights([weight.numpy() for weight in model.start_weights_of("discriminator")], initial)
        untrained = fresh_model()
        assert any(not np.array_equal(one.numpy(), other.numpy())
                   for one, other in zip(model.generator.weights, untrained.generator.weights))


@pytest.mark.slow
def test_an_interrupted_stage_resumes_to_the_uninterrupted_weights():
    def stop_after_step_3(kind, cycle, step):
        assert cycle == pretrain.PRETRAIN_CYCLE
        if (kind, step) == ("step", 3):
            raise Interrupted

    with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
        expected = weights(pretrained(first))
        interrupted = fresh_model()
        with pytest.raises(Interrupted):
            stage(second).run(interrupted, POOL, make_strategy(), log=lambda message: None, notify=stop_after_step_3)
        messages = []
        assert_same_weights(weights(pretrained(second, log=messages.append)), expected)
        assert "pretraining: resuming after step 2 of 4" in messages


@pytest.mark.slow
def test_the_cache_is_reused_for_the_same_identity_and_keyed_apart_for_others():
    with tempfile.TemporaryDirectory() as runs, tempfile.TemporaryDirectory() as cache:
        expected = weights(pretrained(os.path.join(runs, "a"), cache))
        messages = []
        assert_same_weights(weights(pretrained(os.path.join(runs, "b"), cache, log=messages.append)), expected)
        assert any(message.startswith("pretraining: restored the finished stage (4 steps)") for message in messages)
        pretrained(os.path.join(runs, "c"), cache, steps=2)
        pretrained(os.path.join(runs, "d"), cache, seed=1)
        assert len(os.listdir(cache)) == 3
        assert not os.path.exists(os.path.join(runs, "a", pretrain.RUN_SUBDIR))


def test_stage_key_follows_the_identity():
    model = fresh_model()
    identity = pretrain.stage_identity(model, "pool-sha", 4, 4, 0)
    assert pretrain.stage_key(identity) == pretrain.stage_key(dict(identity))
    assert pretrain.stage_key(identity) != pretrain.stage_key({**identity, "seed": 1})
    model.discriminator.weights[0].assign(model.discriminator.weights[0] + 1.0)
    assert pretrain.stage_identity(model, "pool-sha", 4, 4, 0)["start_weights_sha256"] != \
        identity["start_weights_sha256"]
    assert identity["tensorflow"] == tf.__version__


def test_a_finished_checkpoint_of_another_stage_is_refused():
    with tempfile.TemporaryDirectory() as directory:
        pretrained(directory)
        with pytest.raises(RunStateError, match="a pretraining stage of other settings"):
            model = fresh_model()
            # Same directory (no cache), other steps: the stage's run.json does not match.
            stage(directory, steps=6).run(model, POOL, make_strategy(), log=lambda message: None)


def test_initial_selection_is_distinct_pool_indices_and_the_same_from_the_restored_stage():
    with tempfile.TemporaryDirectory() as directory:

        def select():
            keras.utils.set_random_seed(3)
            return pretrain.InitialSelection(ARALModel(tiny_config()), True, stage(directory), POOL, 5, 0, 4,
                                             make_strategy(), log=lambda message: None)()

        first = select()
        assert first.dtype == np.int64 and len(np.unique(first)) == 5 and first.max() < len(POOL)
        np.testing.assert_array_equal(select(), first)
