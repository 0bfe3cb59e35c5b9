"""Improved-GAN's semi-supervised game on ARAL's MLP discriminator: the reference for C's accuracy.

    python -m benchmarks.improved_gan --data_file=../shared/data/mnist.npz --labels=100 \
        --steps=6000 --every=600

Trains ARAL's MNIST discriminator D (the same `networks.Discriminator`, data-dependent
initialisation) with the game of Salimans et al. (2016), without E or S: D minimises the
labeled cross-entropy plus 1/2 (E[softplus(-LSE(l(x_U)))] + E[softplus(LSE(l(G(z))))]), and G
(Improved-GAN's MNIST generator: uniform z, softplus layers with batch normalisation, sigmoid
output, here without weight normalisation on the output layer) minimises feature matching.
Every `--every` steps it prints and appends to `--output` (JSON lines) C's test accuracy with the
last weights and with a moving average of them.

`--generator=aral` swaps in ARAL's class-conditional G (`networks.Generator`, z ~ N(0, I), y
uniform) and enables ARAL's generator-side terms one by one: Eq. 9's generated-image term
(`--generated_cls`), class-conditional feature matching (`--class_feature_matching`) and Eq. 7
against D's class head (`--generator_gan`); `--discriminator_weighting=aral` counts labeled images
as real and weighs the terms as Eq. 8 does (`losses.discriminator_gan_loss`). It isolates which
of ARAL's additions to this game cost C accuracy.

`--label_draw=balanced` takes `--labels / num_classes` images of each class, as Improved-GAN's
experiments do; it reads the pool's labels, so it is a reference setting, never an acquisition.
"""

import json
import math
import sys
import time

from absl import app
from absl import flags

from aral_tf.quiet import muted_native_stderr

with muted_native_stderr():
    # pylint: disable=wrong-import-position
    import keras
    import numpy as np
    import tensorflow as tf

    from aral_tf import data as data_lib
    from aral_tf import losses
    from aral_tf.data import to_model_range
    from aral_tf.loop import INIT_SAMPLE_SIZE
    from aral_tf.networks import Discriminator, Generator, NetworkConfig
    tf.config.list_physical_devices()

flags.DEFINE_string("dataset", "mnist", "Dataset name (see main.py).")
flags.DEFINE_string("data_file", None, "The dataset's .npz.")
flags.DEFINE_integer("labels", 100, "Labeled pool images.")
flags.DEFINE_enum("label_draw", "uniform", ["uniform", "balanced"],
                  "uniform: the draw of main.py --initial_labels; balanced: labels / classes per class.")
flags.DEFINE_integer("steps", 6000, "Training steps.")
flags.DEFINE_integer("every", 600, "Evaluate every this many steps.")
flags.DEFINE_integer("batch_size", 100, "Batch of each stream (labeled, unlabeled, generated).")
flags.DEFINE_integer("seed", 0, "Seed of the draw, the initialisation and the batches.")
flags.DEFINE_float("lr_discriminator", 3e-3, "Adam learning rate of D (Improved-GAN: 3e-3).")
flags.DEFINE_float("lr_generator", 3e-3, "Adam learning rate of G (Improved-GAN: 3e-3; ARAL's flagfile: 1e-3).")
flags.DEFINE_float("average", 0.995, "Momentum of the moving average of D's weights that is also evaluated.")
flags.DEFINE_enum("generator", "improved_gan", ["improved_gan", "aral"], "G's network and latent prior.")
flags.DEFINE_enum("discriminator_weighting", "improved_gan", ["improved_gan", "aral"],
                  "D's real/fake loss: Improved-GAN's, or Eq. 8's (labeled images counted as real).")
flags.DEFINE_float("generated_cls", 0.0, "Weight of Eq. 9's generated-image term (needs --generator=aral).")
flags.DEFINE_float("class_feature_matching", 0.0, "Class-conditional feature matching weight (--generator=aral).")
flags.DEFINE_float("generator_gan", 0.0, "Weight of Eq. 7 against D's class head (--generator=aral).")
flags.DEFINE_string("output", None, "Append one JSON line per evaluation here.")
FLAGS = flags.FLAGS

USAGE_EXIT_CODE = 2
IMPROVED_GAN_UNITS = 500


def _usage_error(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(USAGE_EXIT_CODE)


def parse_flags(argv):
    """absl flag parsing; a malformed or unknown flag exits with one line and code 2."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        _usage_error(str(error).splitlines()[0])


def check_flags(argv):
    """Exits with one line and code 2 on a flag no training can use."""
    if len(argv) > 1:
        _usage_error(f"unexpected arguments {' '.join(argv[1:])}")
    for name, minimum in (("labels", 1), ("steps", 1), ("every", 1), ("batch_size", 1), ("seed", 0)):
        if FLAGS[name].value < minimum:
            _usage_error(f"--{name}={FLAGS[name].value}: must be at least {minimum}")
    if FLAGS.every > FLAGS.steps:
        _usage_error(f"--every={FLAGS.every}: more than --steps={FLAGS.steps}, so nothing would be evaluated")
    for name in ("lr_discriminator", "lr_generator"):
        if not (math.isfinite(FLAGS[name].value) and FLAGS[name].value > 0):
            _usage_error(f"--{name}={FLAGS[name].value}: must be positive")
    if not 0 <= FLAGS.average < 1:
        _usage_error(f"--average={FLAGS.average}: must be in [0, 1)")
    for name in ("generated_cls", "class_feature_matching", "generator_gan"):
        value = FLAGS[name].value
        if not (math.isfinite(value) and value >= 0):
            _usage_error(f"--{name}={value}: must be a finite number >= 0")
        if value and FLAGS.generator != "aral":
            _usage_error(f"--{name}={value}: needs --generator=aral (Improved-GAN's G has no class input)")


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
        keras.Input((100,)),
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
        if self.options["generator"] == "aral":
            return rng.standard_normal((count, self.config.latent_dim)).astype(np.float32)
        return rng.uniform(size=(count, 100)).astype(np.float32)

    def generate(self, latent, labels):
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
        for start in range(0, len(labels), 1000):
            _, logits = self.discriminator(to_model_range(images[start:start + 1000]), training=False)
            correct += int(np.sum(np.argmax(logits, axis=-1) == labels[start:start + 1000]))
        for variable, value in zip(variables, saved):
            variable.assign(value)
        return correct / len(labels)


def main(argv):
    check_flags(argv)
    keras.utils.set_random_seed(FLAGS.seed)
    tf.config.experimental.enable_op_determinism()
    try:
        _, data = data_lib.load_dataset(FLAGS.dataset, FLAGS.data_file, None)
    except data_lib.DataError as error:
        _usage_error(str(error))
    if FLAGS.labels >= data.pool_size:
        _usage_error(f"--labels={FLAGS.labels}: must be less than the pool's {data.pool_size} images")
    try:
        labeled = draw_labeled(data.y_train, FLAGS.labels, FLAGS.label_draw, FLAGS.seed, data.num_classes)
    except ValueError as error:
        _usage_error(str(error))
    config = NetworkConfig(image_shape=data.image_shape, num_classes=data.num_classes)
    options = {name: FLAGS[name].value for name in (
        "generator", "discriminator_weighting", "lr_discriminator", "lr_generator", "average", "generated_cls",
        "class_feature_matching", "generator_gan")}
    game = Game(config, options)
    rng = np.random.default_rng([FLAGS.seed, 1])
    sample = rng.permutation(data.pool_size)[:INIT_SAMPLE_SIZE]
    game.discriminator.initialize_from_data(to_model_range(data.x_train[np.sort(sample)]))
    labeled_images, labeled_labels = data.x_train[labeled], data.y_train[labeled].astype(np.int32)
    batch = FLAGS.batch_size
    started = time.time()
    for step in range(1, FLAGS.steps + 1):
        picked = rng.choice(len(labeled), batch, replace=len(labeled) < batch)
        values = game.train_step(
            labeled_images[picked], labeled_labels[picked], data.x_train[rng.integers(0, data.pool_size, batch)],
            game.latent(rng, batch), rng.integers(0, data.num_classes, batch).astype(np.int32))
        if step % FLAGS.every:
            continue
        record = {"step": step, "labels": FLAGS.labels, "label_draw": FLAGS.label_draw, "seed": FLAGS.seed,
                  "test_accuracy_last_weights": round(game.accuracy(data.x_test, data.y_test, False), 4),
                  "test_accuracy_averaged": round(game.accuracy(data.x_test, data.y_test, True), 4),
                  "labeled_cross_entropy": round(float(values[0]), 4), "real_fake": round(float(values[1]), 4),
                  "generator_loss": round(float(values[2]), 4), "seconds": round(time.time() - started, 1),
                  **options}
        print(json.dumps(record), flush=True)
        if FLAGS.output:
            with open(FLAGS.output, "a", encoding="utf-8") as output:
                output.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
