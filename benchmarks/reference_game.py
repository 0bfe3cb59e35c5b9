"""Improved-GAN's semi-supervised game on ARAL's MLP discriminator, flag-free (`benchmarks.improved_gan` runs it).

`Game` trains `networks.Discriminator` against Improved-GAN's MNIST generator, or ARAL's
class-conditional one with ARAL's generator-side terms as options; `draw_labeled` picks the
labeled pool images.
"""

import keras
import numpy as np
import tensorflow as tf

from aral_tf import data as data_lib
from aral_tf import losses
from aral_tf.data import to_model_range
from aral_tf.networks import Discriminator, Generator

IMPROVED_GAN_UNITS = 500
IMPROVED_GAN_LATENT_DIM = 100
EVAL_BATCH_SIZE = 1000


def draw_labeled(labels, count, draw, seed, num_classes):
    """Pool indices to label: main.py's uniform draw, or `count / num_classes` per class (`balanced`)."""
    if draw == "uniform":
        return data_lib.initial_indices(len(labels), count, seed)
    if count % num_classes:
        raise ValueError(f"--labels={count}: a balanced draw needs a multiple of the {num_classes} classes")
    per_class = count // num_classes
    order = np.random.default_rng(seed).permutation(len(labels))
    chosen = [order[labels[order] == k][:per_class] for k in range(num_classes)]
    if any(len(indices) < per_class for indices in chosen):
        raise ValueError(f"--labels={count}: some class has fewer than {per_class} pool images")
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def improved_gan_generator(image_shape):
    """Improved-GAN's MNIST G: z (100, uniform) -> 500 -> 500 (softplus, batch norm) -> sigmoid, in [-1, 1]."""
    return keras.Sequential([
        keras.Input((IMPROVED_GAN_LATENT_DIM,)),
        keras.layers.Dense(IMPROVED_GAN_UNITS, activation="softplus"), keras.layers.BatchNormalization(),
        keras.layers.Dense(IMPROVED_GAN_UNITS, activation="softplus"), keras.layers.BatchNormalization(),
        keras.layers.Dense(int(np.prod(image_shape)), activation="sigmoid"),
        keras.layers.Reshape(image_shape),
        keras.layers.Rescaling(2.0, offset=-1.0),
    ])


class Game:
    """D and G with one Adam optimizer each, and the step of the chosen game."""

    def __init__(self, config, options):
        self.config = config
        self.options = options
        self.discriminator = Discriminator(config)
        self.discriminator(tf.zeros((1,) + tuple(config.image_shape)))
        if options["generator"] == "aral":
            self.generator = Generator(config)
            self.generator(tf.zeros((1, config.latent_dim)), tf.zeros((1, config.num_classes)))
        else:
            self.generator = improved_gan_generator(config.image_shape)
        self.discriminator_optimizer = keras.optimizers.Adam(
            options["lr_discriminator"], beta_1=0.5, use_ema=options["average"] > 0,
            ema_momentum=options["average"] or 0.99)
        self.generator_optimizer = keras.optimizers.Adam(options["lr_generator"], beta_1=0.5)
        self.discriminator_optimizer.build(self.discriminator.trainable_variables)
        self.generator_optimizer.build(self.generator.trainable_variables)

    def latent(self, rng, count):
        """`count` latent draws for G: N(0, I) for ARAL's G, uniform on [0, 1) for Improved-GAN's."""
        if self.options["generator"] == "aral":
            return rng.standard_normal((count, self.config.latent_dim)).astype(np.float32)
        return rng.uniform(size=(count, IMPROVED_GAN_LATENT_DIM)).astype(np.float32)

    def generate(self, latent, labels):
        """G's images for `latent` (and, for ARAL's G, the integer class `labels`)."""
        if self.options["generator"] == "aral":
            return self.generator(latent, tf.one_hot(labels, self.config.num_classes), training=True)
        return self.generator(latent, training=True)

    @tf.function
    def train_step(self, labeled, labels, unlabeled, latent, generated_labels):
        """D's update, then G's; returns (labeled cross-entropy, D's real/fake loss, G's loss)."""
        options, num_classes = self.options, self.config.num_classes
        labeled, unlabeled = to_model_range(labeled), to_model_range(unlabeled)
        generated = tf.stop_gradient(self.generate(latent, generated_labels))
        with tf.GradientTape() as tape:
            _, labeled_logits = self.discriminator(labeled, training=True)
            _, unlabeled_logits = self.discriminator(unlabeled, training=True)
            _, generated_logits = self.discriminator(generated, training=True)
            classification = losses.discriminator_classification_loss(
                labeled_logits, labels, generated_logits, generated_labels, generated_weight=options["generated_cls"])
            labeled_lse, unlabeled_lse, generated_lse = (tf.reduce_logsumexp(logits, axis=-1) for logits in (
                labeled_logits, unlabeled_logits, generated_logits))
            if options["discriminator_weighting"] == "aral":
                real_fake = losses.discriminator_gan_loss(labeled_lse, unlabeled_lse, generated_lse)
            else:
                real_fake = 0.5 * (tf.reduce_mean(tf.nn.softplus(-unlabeled_lse))
                                   + tf.reduce_mean(tf.nn.softplus(generated_lse)))
            discriminator_loss = classification + real_fake
        variables = self.discriminator.trainable_variables
        self.discriminator_optimizer.apply_gradients(zip(tape.gradient(discriminator_loss, variables), variables))
        with tf.GradientTape() as tape:
            generated = self.generate(latent, generated_labels)
            labeled_features, _ = self.discriminator(labeled, training=True)
            unlabeled_features, unlabeled_logits = self.discriminator(unlabeled, training=True)
            generated_features, generated_logits = self.discriminator(generated, training=True)
            generator_loss = losses.feature_matching_loss(tf.stop_gradient(unlabeled_features), generated_features)
            generated_one_hot = tf.one_hot(generated_labels, num_classes)
            if options["class_feature_matching"]:
                generator_loss += options["class_feature_matching"] * losses.class_feature_matching_loss(
                    tf.stop_gradient(tf.concat([labeled_features, unlabeled_features], axis=0)),
                    tf.concat([tf.one_hot(labels, num_classes), tf.stop_gradient(tf.nn.softmax(unlabeled_logits))],
                              axis=0),
                    generated_features, generated_one_hot)
            if options["generator_gan"]:
                generator_loss += options["generator_gan"] * losses.generator_gan_loss(
                    self.discriminator.class_head_logit(generated_logits, generated_one_hot))
        variables = self.generator.trainable_variables
        self.generator_optimizer.apply_gradients(zip(tape.gradient(generator_loss, variables), variables))
        labeled_cross_entropy = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, labeled_logits))
        return labeled_cross_entropy, real_fake, generator_loss

    def accuracy(self, images, labels, averaged):
        """C's test accuracy with the last weights, or with their moving average (`averaged`)."""
        variables = self.discriminator.trainable_variables
        saved = [variable.numpy() for variable in variables]
        if averaged:
            self.discriminator_optimizer.finalize_variable_values(variables)
        correct = 0
        for start in range(0, len(labels), EVAL_BATCH_SIZE):
            end = start + EVAL_BATCH_SIZE
            _, logits = self.discriminator(to_model_range(images[start:end]), training=False)
            correct += int(np.sum(np.argmax(logits, axis=-1) == labels[start:end]))
        for variable, value in zip(variables, saved):
            variable.assign(value)
        return correct / len(labels)
