"""Shapes of E, G, D, S for each architecture; weight norm and its data-dependent init; bounds."""

import keras
import numpy as np
import tensorflow as tf

from aral_tf import networks
from tests.helpers import tiny_config


class ArchitectureTest(tf.test.TestCase):

    def check_shapes(self, config):
        encoder, generator, discriminator, sampler = networks.build_networks(config)
        images = tf.random.uniform((2,) + config.image_shape, -1.0, 1.0)
        labels = tf.one_hot([0, 2], config.num_classes)
        mu, log_var = encoder(images, labels)
        self.assertEqual(mu.shape, (2, config.latent_dim))
        self.assertEqual(log_var.shape, (2, config.latent_dim))
        generated = generator(mu, labels)
        self.assertEqual(generated.shape, (2,) + config.image_shape)
        self.assertAllInRange(generated, -1.0, 1.0)
        features, logits = discriminator(images)
        self.assertEqual(logits.shape, (2, config.num_classes))
        self.assertEqual(discriminator.class_head_logit(logits, labels).shape, (2,))
        self.assertEqual(discriminator.pair_head_logit(features, mu).shape, (2,))
        self.assertEqual(sampler(mu).shape, (2,))

    def test_mlp(self):
        self.check_shapes(tiny_config("mlp"))

    def test_cnn(self):
        self.check_shapes(tiny_config("cnn", image_shape=(32, 32, 3)))

    def test_resnet(self):
        self.check_shapes(tiny_config("resnet", image_shape=(16, 16, 3)))

    def test_downsampling_residual_block_on_rgb_images_has_gradients(self):
        """The shape that crashed oneDNN (#6035) in the first block of CelebA's D at width 0.25: 64x64x3
        images, 16 filters, stride 2. The skip averages 2x2 pools, then mixes channels (1x1)."""
        block = networks.ResidualBlock(16, stride=2)
        images = tf.random.uniform((8, 64, 64, 3), -1.0, 1.0, seed=1)
        with tf.GradientTape() as tape:
            outputs = block(images)
            loss = tf.reduce_sum(outputs ** 2)
        self.assertEqual(outputs.shape, (8, 32, 32, 16))
        gradients = tape.gradient(loss, block.trainable_variables)
        self.assertTrue(all(np.all(np.isfinite(gradient)) for gradient in gradients))
        kernel, bias = block.skip.kernel, block.skip.bias
        pooled = tf.reduce_mean(tf.reshape(images, (8, 32, 2, 32, 2, 3)), axis=(2, 4))
        hidden = block.conv2(networks._leaky_relu(block.conv1(networks._leaky_relu(images))))
        self.assertAllClose(outputs - hidden, tf.einsum("bhwc,cf->bhwf", pooled, kernel[0, 0]) + bias, atol=1e-5)

    def test_residual_block_without_downsampling_skips_through_a_plain_1x1_convolution(self):
        """Stride 1 (and 2x upsampling, on the resized input): no pooling on the skip path."""
        images = tf.random.uniform((2, 8, 8, 3), -1.0, 1.0, seed=2)
        for upsample, resized in ((False, images), (True, tf.repeat(tf.repeat(images, 2, axis=1), 2, axis=2))):
            block = networks.ResidualBlock(5, upsample=upsample)
            outputs = block(images)
            self.assertIsNone(block.pool)
            self.assertEqual(outputs.shape, resized.shape[:3] + (5,))
            hidden = block.conv2(networks._leaky_relu(block.conv1(networks._leaky_relu(resized))))
            expected_skip = tf.einsum("bhwc,cf->bhwf", resized, block.skip.kernel[0, 0]) + block.skip.bias
            self.assertAllClose(outputs - hidden, expected_skip, atol=1e-5)

    def test_width_multiplier_scales_parameters(self):
        small = networks.build_networks(tiny_config("cnn", image_shape=(32, 32, 3)))[2].count_params()
        config = networks.NetworkConfig(image_shape=(32, 32, 3), num_classes=3, architecture="cnn", width=0.04,
                                        latent_dim=4, sampler_units=16)
        self.assertGreater(networks.build_networks(config)[2].count_params(), small)

    def test_rejects_unknown_architecture_and_bad_width(self):
        with self.assertRaisesRegex(ValueError, "unknown architecture"):
            networks.NetworkConfig(image_shape=(8, 8, 1), num_classes=2, architecture="transformer")
        with self.assertRaisesRegex(ValueError, "width"):
            networks.NetworkConfig(image_shape=(8, 8, 1), num_classes=2, width=0.0)


class RealFakeHeadsTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        keras.utils.set_random_seed(0)
        self.discriminator = networks.build_networks(tiny_config())[2]
        self.features, _ = self.discriminator(tf.zeros((1, 8, 8, 1)))
        self.logits = tf.constant([[1.0, -2.0, 0.5]])

    def test_class_head_is_the_labels_logit(self):
        """With a one-hot y, c(h, y) = l_y; without a label, LSE(l)."""
        for label in range(3):
            self.assertAllClose(self.discriminator.class_head_logit(self.logits, tf.one_hot([label], 3)),
                                self.logits[:, label])
        self.assertAllClose(self.discriminator.class_head_logit(self.logits, tf.zeros((1, 3))),
                            tf.reduce_logsumexp(self.logits, axis=-1))

    def test_discriminator_is_trained_on_the_unconditional_score(self):
        """For D the class head is LSE(l) whatever the label; G's gradient d c / d l is one-hot(y)."""
        label = tf.one_hot([1], 3)
        for train_discriminator, expected in ((False, label), (True, tf.nn.softmax(self.logits))):
            with tf.GradientTape() as tape:
                tape.watch(self.logits)
                value = self.discriminator.class_head_logit(self.logits, label, train_discriminator)
            self.assertAllClose(tape.gradient(value, self.logits), expected)
        for label in (tf.one_hot([0], 3), tf.one_hot([2], 3), tf.constant([[0.2, 0.3, 0.5]])):
            self.assertAllClose(self.discriminator.class_head_logit(self.logits, label, train_discriminator=True),
                                [np.log(np.exp(1.0) + np.exp(-2.0) + np.exp(0.5))])

    def test_pair_head_reads_the_code(self):
        codes = tf.constant([[0.0, 0.0, 0.0, 0.0], [1.0, -1.0, 2.0, 0.5]])
        values = self.discriminator.pair_head_logit(tf.concat([self.features] * 2, axis=0), codes)
        self.assertNotAllClose(values[0], values[1])


class WeightNormDenseTest(tf.test.TestCase):

    def test_output_is_scale_times_unit_direction(self):
        layer = networks.WeightNormDense(2)
        layer.build((None, 2))
        layer.direction.assign([[3.0, 0.0], [4.0, 2.0]])
        layer.scale.assign([2.0, 1.0])
        self.assertAllClose(layer(tf.constant([[1.0, 1.0]])), [[2.0 * 7.0 / 5.0, 1.0]])

    def test_fixed_scale_is_not_trainable(self):
        layer = networks.WeightNormDense(3, train_scale=False)
        layer.build((None, 4))
        self.assertNotIn(layer.scale.path, [v.path for v in layer.trainable_variables])

    def test_data_dependent_init_standardises_outputs(self):
        keras.utils.set_random_seed(0)
        layer = networks.WeightNormDense(5)
        inputs = tf.random.normal((200, 7)) * 3.0 + 1.0
        layer.build(inputs.shape)
        outputs = layer.initialize_from_data(inputs)
        self.assertAllClose(tf.reduce_mean(outputs, axis=0), tf.zeros(5), atol=1e-4)
        self.assertAllClose(tf.math.reduce_std(outputs, axis=0), tf.ones(5), atol=1e-3)


class EncoderBoundTest(tf.test.TestCase):

    def test_outputs_stay_bounded_for_extreme_inputs(self):
        encoder = networks.build_networks(tiny_config())[0]
        mu, log_var = encoder(tf.fill((1, 8, 8, 1), 1e6), tf.one_hot([0], 3))
        self.assertAllInRange(mu, -networks.MAX_ABS_MEAN, networks.MAX_ABS_MEAN)
        self.assertAllInRange(log_var, -networks.MAX_ABS_LOG_VARIANCE, networks.MAX_ABS_LOG_VARIANCE)
        self.assertTrue(np.all(np.isfinite(mu.numpy())))


if __name__ == "__main__":
    tf.test.main()
