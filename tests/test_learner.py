"""The learner contract, the same for ARAL and every baseline: make_adam's average (momentum 0 means the last
weights), loss scaling under mixed precision, restart's names, and the acquisition outputs each declares."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from aral_tf import methods
from aral_tf.learner import Learner, make_adam
from aral_tf.losses import LossWeights
from aral_tf.model import OptimizerConfig
from aral_tf.training import Trainer
from tests.helpers import tiny_batch, tiny_config, tiny_images


def build(name, average_momentum=0.999, noise=0.0):
    keras.utils.set_random_seed(0)
    return methods.LEARNERS[name](tiny_config(noise=noise), LossWeights(),
                                  OptimizerConfig(discriminator_average_momentum=average_momentum))


def train(learner, steps=2):
    trainer = Trainer(learner, tf.distribute.get_strategy())
    for seed in range(steps):
        values = trainer.train_step(tiny_batch(learner.network_config, seed=seed))
    return values


def test_make_adam_averages_only_with_a_positive_momentum():
    variables = [tf.Variable([1.0])]
    assert not make_adam(1e-3, variables, beta_1=0.5).use_ema
    assert not make_adam(1e-3, variables, beta_1=0.5, average_momentum=0.0).use_ema
    averaging = make_adam(1e-3, variables, beta_1=0.5, average_momentum=0.9)
    assert averaging.use_ema and averaging.ema_momentum == pytest.approx(0.9)
    assert averaging.beta_1 == pytest.approx(0.5)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(methods.LEARNERS))
def test_momentum_zero_evaluates_the_last_weights_and_a_positive_one_their_average(name):
    images = tiny_images(4, seed=3)
    for momentum, averaged_differs in ((0.0, False), (0.5, True)):
        learner = build(name, average_momentum=momentum)
        assert isinstance(learner, Learner)
        train(learner)
        trained = np.asarray(learner.classify(images))
        with learner.averaged():
            averaged = np.asarray(learner.classify(images))
        assert (not np.allclose(trained, averaged)) == averaged_differs, momentum
        np.testing.assert_array_equal(trained, learner.classify(images))


@pytest.mark.parametrize("name", sorted(methods.LEARNERS))
def test_acquisition_outputs_give_the_declared_keys_one_row_per_image(name):
    learner = build(name)
    outputs = learner.acquisition_outputs(tiny_images(5))
    assert set(outputs) == set(learner.acquisition_keys) and outputs
    for value in outputs.values():
        assert value.shape[0] == 5


@pytest.mark.parametrize("name", sorted(methods.LEARNERS))
def test_restart_refuses_unknown_network_names(name):
    with pytest.raises(ValueError, match="unknown networks"):
        build(name).restart(("classifier",))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(methods.LEARNERS))
def test_every_learner_scales_its_losses_under_mixed_precision(name):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        learner = build(name, noise=0.3)
        optimizers = [value for owner in [learner, *learner.sub_learners()] for value in vars(owner).values()
                      if isinstance(value, keras.optimizers.Optimizer)]
        assert optimizers and all(isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
                                  for optimizer in optimizers)
        values = train(learner, steps=1)
        assert all(np.isfinite(value) for value in values.values())
        with learner.averaged():
            assert learner.classify(tiny_images(2)).shape == (2, 3)
    finally:
        keras.mixed_precision.set_global_policy("float32")
