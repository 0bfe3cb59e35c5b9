"""Test accuracy against training steps for one labeled set, without acquisition.

    python -m benchmarks.learning_curve --data_file=../shared/data/mnist.npz --labels=100 \
        --steps=2400 --every=600

Trains ARAL from scratch on `--labels` pool indices drawn uniformly with `--seed` (the
same draw as `main.py --initial_labels`), and every `--every` steps prints and appends to
`--output` (JSON lines) the test accuracy of the averaged classifier (the one `main.py`
evaluates) and of the last weights. It separates how fast the model learns from what the
acquisition picks.

With `--judge_epochs=N` it first trains a small supervised CNN on *every* training label (a
diagnostic only; nothing in ARAL reads it) and also reports G's class fidelity: the share of
generated images G(z, y) (100 per class, fixed z) that the judge reads as y, and the share
that the averaged C reads as y. Eq. 9 trains C on those images with those labels.
"""

import json
import time

from absl import app, flags

from aral_tf.cli import fail, muted_native_stderr, parse_flags
from benchmarks.cli import check_training_flags

with muted_native_stderr():  # Also while listing devices, which logs a CUDA probe on CPU-only hosts.
    # pylint: disable=wrong-import-position
    import keras
    import numpy as np
    import tensorflow as tf

    from aral_tf import data as data_lib
    from aral_tf.data import initialization_images, to_model_range
    from aral_tf.loop import evaluate
    from aral_tf.losses import LossWeights
    from aral_tf.model import ARALModel, OptimizerConfig
    from aral_tf.networks import NetworkConfig
    from aral_tf.pipeline import BatchStream
    from aral_tf.training import Trainer
    tf.config.list_physical_devices()

flags.DEFINE_string("dataset", "mnist", "Dataset name (see main.py).")
flags.DEFINE_string("data_file", None, "The dataset's .npz.")
flags.DEFINE_integer("labels", 100, "Labeled pool indices, drawn uniformly with --seed.")
flags.DEFINE_integer("steps", 2400, "Training steps.")
flags.DEFINE_integer("every", 600, "Evaluate every this many steps.")
flags.DEFINE_integer("batch_size", 100, "Global batch of each stream.")
flags.DEFINE_integer("seed", 0, "Seed of the draw, the initialisation and the batches.")
flags.DEFINE_float("lr_encoder_generator", 1e-3, "Adam learning rate of E and G.")
flags.DEFINE_float("lr_discriminator", 3e-3, "Adam learning rate of D.")
flags.DEFINE_float("generator_gan", 1.0, "Weight of Eq. 7 in G's loss (main.py's flag).")
flags.DEFINE_float("generated_cls", 1.0, "Weight of Eq. 9's generated term (main.py's flag).")
flags.DEFINE_float("class_feature_matching", 0.0, "Class-conditional feature matching weight (main.py's flag).")
flags.DEFINE_integer("judge_epochs", 0, "Train a supervised judge CNN on all labels for this many epochs "
                     "and report G's class fidelity (0: off).")
flags.DEFINE_string("output", None, "Append one JSON line per evaluation here.")
FLAGS = flags.FLAGS


def train_judge(data, epochs):
    """A small CNN trained on every training label: the judge of G's classes (diagnostic only)."""
    judge = keras.Sequential([
        keras.Input(data.image_shape),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPool2D(),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPool2D(),
        keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(data.num_classes)])
    judge.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    judge.fit(to_model_range(data.x_train), data.y_train, batch_size=128, epochs=epochs, verbose=0)
    _, accuracy = judge.evaluate(to_model_range(data.x_test), data.y_test, verbose=0)
    print(json.dumps({"judge_test_accuracy": round(float(accuracy), 4)}), flush=True)
    return judge


def generator_fidelity(model, judge, num_classes, latent_dim, per_class=100):
    """Shares of G(z, y) that the judge and the averaged C read as y (fixed z, `per_class` per class)."""
    latent = np.random.default_rng(123).standard_normal((per_class * num_classes, latent_dim)).astype("float32")
    labels = np.repeat(np.arange(num_classes), per_class)
    generated = model.generator(latent, tf.one_hot(labels, num_classes), training=False)
    judged = np.argmax(judge(generated, training=False), axis=-1)
    with model.averaged():
        classified = np.argmax(model.discriminator(generated, training=False)[1], axis=-1)
    return float(np.mean(judged == labels)), float(np.mean(classified == labels))


def check_flags(argv):
    """Exits with one line and code 2 on a flag no training can use."""
    check_training_flags(
        argv, (("labels", 1), ("steps", 1), ("every", 1), ("batch_size", 1), ("seed", 0), ("judge_epochs", 0)),
        positive=("lr_encoder_generator", "lr_discriminator"),
        non_negative=("generator_gan", "generated_cls", "class_feature_matching"))


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
    labeled = np.sort(data_lib.initial_indices(data.pool_size, FLAGS.labels, FLAGS.seed))
    config = NetworkConfig(image_shape=data.image_shape, num_classes=data.num_classes)
    judge = train_judge(data, FLAGS.judge_epochs) if FLAGS.judge_epochs else None
    weights = LossWeights(generator_gan=FLAGS.generator_gan, generated_cls=FLAGS.generated_cls,
                          class_feature_matching=FLAGS.class_feature_matching)
    model = ARALModel(config, weights,
                      OptimizerConfig(encoder_generator_lr=FLAGS.lr_encoder_generator,
                                      discriminator_lr=FLAGS.lr_discriminator))
    model.initialize_from_data(initialization_images(data.x_train, FLAGS.seed))
    trainer = Trainer(model, tf.distribute.get_strategy())
    stream = BatchStream(data.x_train, data.y_train[labeled], labeled, FLAGS.batch_size,
                         config.latent_dim, data.num_classes, seed=[FLAGS.seed, 0])
    started = time.time()
    for step in range(FLAGS.every, FLAGS.steps + 1, FLAGS.every):
        trainer.train(stream, FLAGS.every, verbose=False)
        with model.averaged():
            averaged = evaluate(model, data.x_test, data.y_test, 1000)
        last = evaluate(model, data.x_test, data.y_test, 1000)
        record = {"step": step, "labels": FLAGS.labels, "seed": FLAGS.seed,
                  "test_accuracy": round(averaged, 4), "test_accuracy_last_weights": round(last, 4),
                  "seconds": round(time.time() - started, 1)}
        if judge is not None:
            judged, classified = generator_fidelity(model, judge, data.num_classes, config.latent_dim)
            record.update(generator_fidelity=round(judged, 4), classifier_agrees_with_generator=round(classified, 4))
        print(json.dumps(record), flush=True)
        if FLAGS.output:
            with open(FLAGS.output, "a", encoding="utf-8") as stream_out:
                stream_out.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
