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
import time

from absl import app, flags

from aral_tf.cli import fail, muted_native_stderr, parse_flags
from benchmarks.cli import check_training_flags

with muted_native_stderr():
    # pylint: disable=wrong-import-position
    import keras
    import numpy as np
    import tensorflow as tf

    from aral_tf import data as data_lib
    from aral_tf.data import INIT_SAMPLE_SIZE, to_model_range
    from aral_tf.networks import NetworkConfig
    from benchmarks.reference_game import Game, draw_labeled
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


def check_flags(argv):
    """Exits with one line and code 2 on a flag no training can use."""
    check_training_flags(argv, (("labels", 1), ("steps", 1), ("every", 1), ("batch_size", 1), ("seed", 0)),
                         positive=("lr_discriminator", "lr_generator"),
                         non_negative=("generated_cls", "class_feature_matching", "generator_gan"))
    if not 0 <= FLAGS.average < 1:
        fail(f"--average={FLAGS.average}: must be in [0, 1)")
    for name in ("generated_cls", "class_feature_matching", "generator_gan"):
        if FLAGS[name].value and FLAGS.generator != "aral":
            fail(f"--{name}={FLAGS[name].value}: needs --generator=aral (Improved-GAN's G has no class input)")


def main(argv):
    check_flags(argv)
    keras.utils.set_random_seed(FLAGS.seed)
    tf.config.experimental.enable_op_determinism()
    try:
        _, data = data_lib.load_dataset(FLAGS.dataset, FLAGS.data_file, None)
    except data_lib.DataError as error:
        fail(str(error))
    if FLAGS.labels >= data.pool_size:
        fail(f"--labels={FLAGS.labels}: must be less than the pool's {data.pool_size} images")
    try:
        labeled = draw_labeled(data.y_train, FLAGS.labels, FLAGS.label_draw, FLAGS.seed, data.num_classes)
    except ValueError as error:
        fail(str(error))
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
