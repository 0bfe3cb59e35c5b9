"""AveragingAdam: the warmed-up weight average, by hand-computed values."""

import keras
import numpy as np
import tensorflow as tf

from aral_tf.optimizers import AveragingAdam


def averages_after(optimizer, values):
    """Feeds `values` as the weight before each update (learning rate 0, so Adam leaves it); returns the averages."""
    variable = keras.Variable(0.0)
    optimizer.build([variable])
    averages = []
    for value in values:
        variable.assign(value)
        optimizer.apply_gradients([(tf.constant(1.0), variable)])
        averages.append(float(optimizer._model_variables_moving_average[0].numpy()))  # pylint: disable=protected-access
    return averages


class AveragingAdamTest(tf.test.TestCase):

    def test_average_warms_up(self):
        # a0 = 1; m1 = 2/11: a1 = 2/11 * 1 + 9/11 * 2 = 20/11; m2 = 3/12: a2 = 1/4 * 20/11 + 3/4 * 4 = 38/11.
        averages = averages_after(AveragingAdam(0.0, ema_momentum=0.999), [1.0, 2.0, 4.0])
        self.assertAllClose(averages, [1.0, 20 / 11, 38 / 11], rtol=1e-6)

    def test_momentum_caps_the_warm_up(self):
        # m1 = min(0.1, 2/11) = 0.1: a1 = 0.1 * 1 + 0.9 * 2 = 1.9; a2 = 0.1 * 1.9 + 0.9 * 4 = 3.79.
        averages = averages_after(AveragingAdam(0.0, ema_momentum=0.1), [1.0, 2.0, 4.0])
        self.assertAllClose(averages, [1.0, 1.9, 3.79], rtol=1e-6)

    def test_keras_average_differs(self):
        # Keras's own rule: a1 = 0.999 * 1 + 0.001 * 2 = 1.001, what the warm-up is there to avoid.
        averages = averages_after(keras.optimizers.Adam(0.0, use_ema=True, ema_momentum=0.999), [1.0, 2.0])
        self.assertAllClose(averages, [1.0, 1.001], rtol=1e-6)

    def test_without_average_it_is_adam(self):
        variable = keras.Variable(np.float32(1.0))
        ours, theirs = AveragingAdam(0.1, use_ema=False), keras.optimizers.Adam(0.1)
        twin = keras.Variable(np.float32(1.0))
        for gradient in (0.5, -2.0, 1.0):
            ours.apply_gradients([(tf.constant(gradient), variable)])
            theirs.apply_gradients([(tf.constant(gradient), twin)])
        self.assertAllClose(variable.numpy(), twin.numpy())

    def test_serialises(self):
        optimizer = AveragingAdam(0.002, beta_1=0.5, ema_momentum=0.99)
        restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
        self.assertIsInstance(restored, AveragingAdam)
        self.assertEqual(restored.get_config(), optimizer.get_config())
