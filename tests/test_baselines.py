"""The baseline learners: a step changes them with finite losses; MC dropout varies; averaged weights."""

import keras
import numpy as np
import pytest

from aral_tf import baselines, methods
from aral_tf.distribution import make_strategy
from aral_tf.losses import LossWeights
from aral_tf.model import OptimizerConfig
from aral_tf.pipeline import BatchStream
from aral_tf.training import Trainer
from tests.helpers import tiny_config, tiny_images

LEARNERS = {name: lambda config, build=build: build(config, LossWeights(), OptimizerConfig())
            for name, build in methods.LEARNERS.items() if name != "aral"}


def _batch(config):
    images = tiny_images(20)
    return BatchStream(images, np.array([0, 1, 2, 0, 1]), np.arange(5), 4, config.latent_dim, config.num_classes,
                       seed=0).next()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_a_training_step_changes_the_classifier_with_finite_losses(name):
    keras.utils.set_random_seed(0)
    config = tiny_config(noise=0.3)
    learner = LEARNERS[name](config)
    images = tiny_images(6, seed=2)
    before = np.asarray(learner.classify(images))
    losses = Trainer(learner, make_strategy()).train_step(_batch(config))
    assert losses and all(np.isfinite(value) for value in losses.values())
    assert not np.allclose(before, learner.classify(images))


def test_mc_probabilities_vary_under_dropout_and_not_without_it():
    keras.utils.set_random_seed(0)
    images = tiny_images(5)
    noisy = baselines.SupervisedClassifier(tiny_config(noise=0.5), OptimizerConfig())
    passes = np.asarray(noisy.mc_probabilities(images, 4))
    assert passes.shape == (5, 4, 3)
    np.testing.assert_allclose(passes.sum(axis=-1), 1.0, rtol=1e-5)
    assert np.std(passes, axis=1).max() > 1e-4
    plain = baselines.SupervisedClassifier(tiny_config(noise=0.0), OptimizerConfig())
    passes = np.asarray(plain.mc_probabilities(images, 3))
    np.testing.assert_allclose(passes[:, 0], passes[:, 2], rtol=1e-6)


def test_averaged_weights_are_used_inside_the_context_and_restored_after():
    keras.utils.set_random_seed(0)
    config = tiny_config()
    learner = baselines.SupervisedClassifier(config, OptimizerConfig(discriminator_average_momentum=0.5))
    trainer = Trainer(learner, make_strategy())
    for _ in range(3):
        trainer.train_step(_batch(config))
    images = tiny_images(4, seed=3)
    trained = np.asarray(learner.classify(images))
    with learner.averaged():
        averaged = np.asarray(learner.classify(images))
    assert not np.allclose(trained, averaged)
    np.testing.assert_allclose(trained, learner.classify(images))


def test_vaal_scores_are_probabilities():
    keras.utils.set_random_seed(0)
    vaal = baselines.VAAL(tiny_config(), LossWeights(), OptimizerConfig())
    scores = np.asarray(vaal.acquisition_score(tiny_images(7)))
    assert scores.shape == (7,) and np.all((scores > 0) & (scores < 1))


@pytest.mark.slow
def test_no_cotrain_weighs_generated_images_as_eq9():
    """`generated_cls` scales the generated images' cross-entropy; at 0 only the labeled images count."""
    config = tiny_config()
    batch = _batch(config)
    classifier_weights = []
    for generated_cls, flip in ((0.0, 0), (0.0, 1), (1.0, 0), (1.0, 1)):
        keras.utils.set_random_seed(0)
        learner = baselines.VAALWithGANClassifier(config, LossWeights(generated_cls=generated_cls), OptimizerConfig())
        learner.train_step(dict(batch, prior_labels=(batch["prior_labels"] + flip) % config.num_classes))
        classifier_weights.append([w.numpy() for w in learner.classifier.trainable_variables])
    for unflipped, flipped in zip(classifier_weights[0], classifier_weights[1]):
        np.testing.assert_allclose(unflipped, flipped)  # The generated labels do not matter at weight 0.
    assert any(not np.allclose(a, b) for a, b in zip(classifier_weights[2], classifier_weights[3]))


def _network_weights(learner):
    """{network name: list of weight arrays} of every network (Keras model) the learner or a learner in it holds."""
    found = {}
    for value in vars(learner).values():
        if isinstance(value, keras.Model):
            found[value.name] = [np.array(weight) for weight in value.weights]
        elif isinstance(value, baselines.BaselineLearner):
            found.update(_network_weights(value))
    return found


def _changed(before, after):
    return {name for name in before
            if any(not np.array_equal(a, b) for a, b in zip(before[name], after[name]))}


RESTARTED_BY_DISCRIMINATOR_AND_GENERATOR = {
    "supervised": {"classifier"},
    "vaal_with_gan": {"classifier", "vaal_decoder", "gan_discriminator", "gan_generator"},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["supervised", "vaal_with_gan"])  # vaal_with_gan holds every other learner
def test_restart_puts_back_the_networks_in_those_roles_and_clears_their_optimizers(name):
    keras.utils.set_random_seed(0)
    config = tiny_config(noise=0.3)
    learner = LEARNERS[name](config)
    learner.initialize_from_data(tiny_images(6, seed=4))
    start = _network_weights(learner)
    trainer = Trainer(learner, make_strategy())
    for _ in range(2):
        trainer.train_step(_batch(config))
    trained = _network_weights(learner)
    assert _changed(start, trained) == set(start)
    learner.restart(("discriminator", "generator"))
    now = _network_weights(learner)
    expected = RESTARTED_BY_DISCRIMINATOR_AND_GENERATOR[name]
    assert _changed(trained, now) == expected
    assert _changed(start, now) == set(start) - expected
    # An optimizer starts afresh when a network it trains is restarted (VAAL's E and decoder share one).
    trained_by = {}
    for owner in [learner, *learner.sub_learners()]:
        for networks, optimizers in owner.restartable().values():
            for optimizer in optimizers:
                trained_by.setdefault(id(optimizer), (optimizer, set()))[1].update(net.name for net in networks)
    assert trained_by
    for optimizer, networks in trained_by.values():
        assert int(optimizer.iterations) == (0 if networks & expected else 2)


def test_a_restarted_classifier_takes_the_same_step_as_a_fresh_one():
    keras.utils.set_random_seed(0)
    config = tiny_config()
    learner = baselines.SupervisedClassifier(config, OptimizerConfig())
    learner.initialize_from_data(tiny_images(6, seed=4))
    start = [np.array(weight) for weight in learner.network.weights]
    trainer = Trainer(learner, make_strategy())
    for _ in range(3):
        trainer.train_step(_batch(config))
    learner.restart(("discriminator",))
    trainer.train_step(_batch(config))
    fresh = baselines.SupervisedClassifier(config, OptimizerConfig())
    for weight, value in zip(fresh.network.weights, start):
        weight.assign(value)
    Trainer(fresh, make_strategy()).train_step(_batch(config))
    for restarted, reference in zip(learner.network.weights, fresh.network.weights):
        np.testing.assert_allclose(np.array(restarted), np.array(reference), rtol=1e-5, atol=1e-6)


def test_supervised_classifiers_take_the_classifier_learning_rate_and_gan_discriminators_ds():
    config = tiny_config()
    optimizer_config = OptimizerConfig(discriminator_lr=3e-3, classifier_lr=2e-4)
    learner = baselines.VAALWithGANClassifier(config, LossWeights(), optimizer_config)
    np.testing.assert_allclose(float(learner.classifier.optimizer.learning_rate), 2e-4)
    np.testing.assert_allclose(float(learner.gan.discriminator_optimizer.learning_rate), 3e-3)
