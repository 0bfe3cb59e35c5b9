"""Hand-computed values for every loss of aral_tf.losses (paper Eqs. 5-13)."""

import math

import tensorflow as tf

from aral_tf import losses


def softplus(value):
    return math.log1p(math.exp(value))


class LossesTest(tf.test.TestCase):

    def test_reconstruction_nll_is_half_sum_of_squares_per_example(self):
        images = tf.constant([[[[0.0], [1.0]]], [[[0.5], [-1.0]]]])  # [2, 1, 2, 1]
        reconstructions = tf.constant([[[[1.0], [1.0]]], [[[0.0], [1.0]]]])
        self.assertAllClose(losses.reconstruction_nll(images, reconstructions), [0.5, 0.5 * (0.25 + 4.0)])

    def test_kl_divergence_of_standard_normal_is_zero(self):
        self.assertAllClose(losses.kl_divergence(tf.zeros([3, 4]), tf.zeros([3, 4])), [0.0, 0.0, 0.0])

    def test_kl_divergence_hand_value(self):
        # 0.5 * [(e^1 + 1 - 1 - 1) + (e^0 + 4 - 1 - 0)] = 0.5 * (e - 1 + 4)
        kl = losses.kl_divergence(tf.constant([[1.0, 2.0]]), tf.constant([[1.0, 0.0]]))
        self.assertAllClose(kl, [0.5 * (math.e + 3.0)])

    def test_acquisition_loss_eq5(self):
        weights = losses.LossWeights(trd=0.1, adv=0.01, beta=2.0)
        value = losses.acquisition_encoder_generator_loss(
            nll_labeled=tf.constant([1.0, 3.0]), kl_labeled=tf.constant([0.5, 0.5]),
            nll_unlabeled=tf.constant([2.0, 2.0]), kl_unlabeled=tf.constant([1.0, 0.0]),
            sampler_logits_labeled=tf.constant([0.0, 0.0]), sampler_logits_unlabeled=tf.constant([1.0, -1.0]),
            weights=weights)
        transductive = (2.0 + 2.0 * 0.5) + (2.0 + 2.0 * 0.5)
        adversarial = softplus(0.0) + 0.5 * (softplus(-1.0) + softplus(1.0))
        self.assertAllClose(value, 0.1 * transductive + 0.01 * adversarial)

    def test_sampler_loss_eq6(self):
        value = losses.sampler_loss(tf.constant([2.0, 0.0]), tf.constant([-1.0, 3.0]))
        # -log S(labeled) = softplus(-logit); -log(1 - S(unlabeled)) = softplus(logit)
        expected = 0.5 * (softplus(-2.0) + softplus(0.0)) + 0.5 * (softplus(-1.0) + softplus(3.0))
        self.assertAllClose(value, expected)

    def test_sampler_loss_is_small_when_sampler_is_right(self):
        self.assertLess(float(losses.sampler_loss(tf.constant([20.0]), tf.constant([-20.0]))), 1e-6)

    def test_generator_gan_loss_eq7_is_minus_log_d(self):
        logits = tf.constant([0.0, 2.0])
        expected = -0.5 * (math.log(0.5) + math.log(1 / (1 + math.exp(-2.0))))
        self.assertAllClose(losses.generator_gan_loss(logits), expected)

    def test_feature_matching_hand_value(self):
        real = tf.constant([[1.0, 0.0], [3.0, 2.0]])  # mean [2, 1]
        fake = tf.constant([[0.0, 0.0], [0.0, 1.0]])  # mean [0, 0.5]
        self.assertAllClose(losses.feature_matching_loss(real, fake), (4.0 + 0.25) / 2)

    def test_discriminator_gan_loss_eq8(self):
        labeled, unlabeled, generated = tf.constant([1.0]), tf.constant([0.0]), tf.constant([-2.0])
        expected = -math.log(1 / (1 + math.exp(-1.0))) - math.log(0.5) - math.log(1 - 1 / (1 + math.exp(2.0)))
        self.assertAllClose(losses.discriminator_gan_loss(labeled, unlabeled, generated), expected)

    def test_discriminator_gan_loss_averages_each_stream(self):
        value = losses.discriminator_gan_loss(tf.constant([0.0, 0.0]), tf.constant([0.0, 0.0]),
                                              tf.constant([0.0, 0.0]))
        self.assertAllClose(value, 3 * math.log(2.0))

    def test_discriminator_classification_loss_eq9(self):
        logits_labeled = tf.constant([[0.0, 0.0], [2.0, 0.0]])
        logits_generated = tf.constant([[0.0, math.log(3.0)]])
        value = losses.discriminator_classification_loss(
            logits_labeled, tf.constant([1, 0]), logits_generated, tf.constant([1]))
        labeled = 0.5 * (math.log(2.0) + math.log(1 + math.exp(-2.0)))
        generated = -math.log(3.0 / 4.0)
        self.assertAllClose(value, labeled + generated)

    def test_encoder_bigan_loss_eq10_plays_against_d(self):
        value = losses.encoder_bigan_loss(tf.constant([0.0, 2.0]), tf.constant([-1.0, 1.0]))
        # softplus: ln 2 = 0.693147, ln(1 + e^2) = 2.126928, ln(1 + e^-1) = 0.313262, ln(1 + e) = 1.313262.
        self.assertAllClose(value, 0.5 * ((0.693147 + 2.126928) / 2 + (0.313262 + 1.313262) / 2), atol=1e-5)
        # The encoder gains when D's pair head is fooled: lower pair logits give a lower loss.
        self.assertLess(float(losses.encoder_bigan_loss(tf.constant([-3.0]), tf.constant([-3.0]))), float(value))

    def test_encoder_bigan_loss_saturates_once_d_is_fooled(self):
        """Once D reads E's pairs as generated, E's push fades: it does not drive its codes on without end."""
        pair = tf.constant([-20.0, 0.0, 20.0])
        with tf.GradientTape() as tape:
            tape.watch(pair)
            value = losses.encoder_bigan_loss(pair, pair)
        # d/dphi of 1/2 (mean softplus + mean softplus) = sigmoid(phi) / 3 per pair.
        self.assertAllClose(tape.gradient(value, pair), [2.06e-9 / 3, 0.5 / 3, 1.0 / 3], atol=1e-8)

    def test_pair_generator_loss_eq7_raises_phi(self):
        self.assertAllClose(losses.pair_generator_loss(tf.constant([2.0, -1.0])), -0.5)

    def test_pair_discriminator_loss_eq8_hinge(self):
        """Margins of 1: pairs past them cost nothing, so D stops raising phi there."""
        value = losses.pair_discriminator_loss(tf.constant([3.0, 0.0]), tf.constant([0.5, 1.0]),
                                               tf.constant([-2.0, 0.0]))
        # labeled: max(0, 1-3)=0, max(0, 1-0)=1 -> 0.5; unlabeled: 0.5, 0 -> 0.25; generated: 0, 1 -> 0.5.
        self.assertAllClose(value, 0.5 * (0.5 + 0.25) + 0.5)
        far = tf.constant([100.0])
        with tf.GradientTape() as tape:
            tape.watch(far)
            past_margin = losses.pair_discriminator_loss(far, far, -far)
        self.assertAllClose(past_margin, 0.0)
        self.assertAllClose(tape.gradient(past_margin, far), [0.0])

    def test_eq9_gate_keeps_only_generated_images_read_as_their_label(self):
        labeled = tf.constant([[0.0, 0.0]])
        # C gives the conditioning label 1 probability 3/4 on the first generated image, 1/2 on the second.
        generated = tf.constant([[0.0, math.log(3.0)], [0.0, 0.0]])
        values = [float(losses.discriminator_classification_loss(labeled, tf.constant([0]), generated,
                                                                  tf.constant([1, 1]), confidence=confidence))
                  for confidence in (0.0, 0.6, 0.8)]
        # The mean runs over the whole generated batch, the masked images adding 0.
        self.assertAllClose(values, [math.log(2.0) + (-math.log(0.75) + math.log(2.0)) / 2,
                                     math.log(2.0) - math.log(0.75) / 2, math.log(2.0)])

    def test_eq9_generated_weight(self):
        logits = tf.constant([[0.0, 0.0]])
        value = losses.discriminator_classification_loss(logits, tf.constant([0]), logits, tf.constant([1]),
                                                         generated_weight=0.25)
        self.assertAllClose(value, 1.25 * math.log(2.0))

    def test_class_feature_matching_hand_value(self):
        real = tf.constant([[0.0, 2.0], [4.0, 0.0], [1.0, 1.0]])
        # Image 0 is class 0, image 1 class 1, image 2 half of each (soft C(x)).
        real_weights = tf.constant([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
        generated = tf.constant([[1.0, 1.0], [2.0, 0.0], [0.0, 5.0]])
        generated_one_hot = tf.constant([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        # Class 0: real mean (0.5/1.5, 2.5/1.5), generated (1.5, 0.5).
        # Class 1: real (4.5/1.5, 0.5/1.5), generated (0, 5).
        class_0 = ((1 / 3 - 1.5) ** 2 + (5 / 3 - 0.5) ** 2) / 2
        class_1 = ((3.0 - 0.0) ** 2 + (1 / 3 - 5.0) ** 2) / 2
        self.assertAllClose(losses.class_feature_matching_loss(real, real_weights, generated, generated_one_hot),
                            (class_0 + class_1) / 2)

    def test_class_feature_matching_skips_absent_classes(self):
        features = tf.constant([[1.0], [3.0]])
        one_hot = tf.constant([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        generated_one_hot = tf.constant([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
        # Only class 0 is on both sides: (1 - 2)^2.
        self.assertAllClose(losses.class_feature_matching_loss(features, one_hot, features + 1.0, generated_one_hot),
                            1.0)

    def test_eq11_and_eq12_combine_with_lambdas(self):
        weights = losses.LossWeights(gan=2.0, cls=3.0, feature_matching=0.5)
        self.assertAllClose(losses.encoder_generator_loss(1.0, 2.0, 3.0, 4.0, 5.0, weights),
                            1.0 + 2.0 * (2.0 + 3.0 + 2.0))
        self.assertAllClose(losses.discriminator_loss(1.0, 2.0, weights), 2.0 + 6.0)
        weights = losses.LossWeights(gan=2.0, feature_matching=0.5, generator_gan=0.1, class_feature_matching=3.0)
        self.assertAllClose(losses.encoder_generator_loss(1.0, 2.0, 3.0, 4.0, 5.0, weights),
                            1.0 + 2.0 * (2.0 + 0.3 + 2.0 + 15.0))

    def test_losses_use_the_global_batch_size(self):
        value = losses.sampler_loss(tf.constant([0.0]), tf.constant([0.0]), global_batch_size=4)
        self.assertAllClose(value, 2 * math.log(2.0) / 4)


if __name__ == "__main__":
    tf.test.main()
