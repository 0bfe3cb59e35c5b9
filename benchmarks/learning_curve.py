"""Test accuracy against training steps for one labeled set, without acquisition.

    python -m benchmarks.learning_curve --data_file=../shared/data/mnist.npz --labels=100 \
        --steps=2400 --every=600

Trains ARAL from scratch on `--labels` pool indices drawn uniformly with `--seed` (the
same draw as `main.py --initial_labels`), and every `--every` steps prints and appends to
`--output` (JSON lines) the test accuracy of the averaged classifier (the one `main.py`
evaluates) and of the last weights. It separates how fast the model learns from what the
acquisition picks.
"""

import json
import sys
import time

from absl import app
from absl import flags
import keras
import numpy as np
import tensorflow as tf

from aral_tf import data as data_lib
from aral_tf.loop import INIT_SAMPLE_SIZE, INIT_SAMPLE_STREAM, evaluate
from aral_tf.losses import LossWeights
from aral_tf.model import ARALModel, OptimizerConfig
from aral_tf.networks import NetworkConfig
from aral_tf.training import BatchStream, Trainer

flags.DEFINE_string("dataset", "mnist", "Dataset name (see main.py).")
flags.DEFINE_string("data_file", None, "The dataset's .npz.")
flags.DEFINE_integer("labels", 100, "Labeled pool indices, drawn uniformly with --seed.")
flags.DEFINE_integer("steps", 2400, "Training steps.")
flags.DEFINE_integer("every", 600, "Evaluate every this many steps.")
flags.DEFINE_integer("batch_size", 100, "Global batch of each stream.")
flags.DEFINE_integer("seed", 0, "Seed of the draw, the initialisation and the batches.")
flags.DEFINE_float("lr_encoder_generator", 1e-3, "Adam learning rate of E and G.")
flags.DEFINE_float("lr_discriminator", 3e-3, "Adam learning rate of D.")
flags.DEFINE_string("output", None, "Append one JSON line per evaluation here.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    keras.utils.set_random_seed(FLAGS.seed)
    tf.config.experimental.enable_op_determinism()
    _, data = data_lib.load_dataset(FLAGS.dataset, FLAGS.data_file, None)
    labeled = np.sort(data_lib.initial_indices(data.pool_size, FLAGS.labels, FLAGS.seed))
    config = NetworkConfig(image_shape=data.image_shape, num_classes=data.num_classes)
    model = ARALModel(config, LossWeights(),
                      OptimizerConfig(encoder_generator_lr=FLAGS.lr_encoder_generator,
                                      discriminator_lr=FLAGS.lr_discriminator))
    sample = np.random.default_rng([FLAGS.seed, INIT_SAMPLE_STREAM]).permutation(data.pool_size)
    model.initialize_from_data(data.x_train[np.sort(sample[:INIT_SAMPLE_SIZE])])
    trainer = Trainer(model, tf.distribute.get_strategy())
    stream = BatchStream(data.x_train, data.y_train[labeled], labeled, FLAGS.batch_size,
                         config.latent_dim, data.num_classes, seed=[FLAGS.seed, 0])
    started = time.time()
    for step in range(FLAGS.every, FLAGS.steps + 1, FLAGS.every):
        trainer.train(stream, FLAGS.every, verbose=False)
        with model.averaged_discriminator():
            averaged = evaluate(model, data.x_test, data.y_test, 1000)
        last = evaluate(model, data.x_test, data.y_test, 1000)
        record = {"step": step, "labels": FLAGS.labels, "seed": FLAGS.seed,
                  "test_accuracy": round(averaged, 4), "test_accuracy_last_weights": round(last, 4),
                  "seconds": round(time.time() - started, 1)}
        print(json.dumps(record), flush=True)
        if FLAGS.output:
            with open(FLAGS.output, "a", encoding="utf-8") as stream_out:
                stream_out.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
