"""TensorBoard summaries of an active learning run (`--tensorboard_dir`).

Tags written to the log directory:
    losses/<name>         every loss of the step (E+G, D, S and their terms), by training step
    test_accuracy         C's test accuracy after each cycle, by number of labels
    generated_images      a grid of G(z, y): one row per class, the same z every cycle, by cycle (ARAL-trained
                          methods only)
    _hparams_/...         the run's hyperparameters and the test_accuracy metric (HParams plugin)
"""

import numpy as np
from tensorboard.plugins.hparams import api as hparams_api
import tensorflow as tf

ACCURACY_TAG = "test_accuracy"
IMAGES_TAG = "generated_images"


def image_grid(images, columns):
    """Tiles images in [-1, 1] of shape [rows * columns, H, W, C] row by row.

    Returns one image of shape [1, rows * H, columns * W, C] in [0, 1].
    """
    images = np.asarray(images, dtype=np.float32)
    count, height, width, channels = images.shape
    rows = count // columns
    grid = images.reshape(rows, columns, height, width, channels).transpose(0, 2, 1, 3, 4)
    return np.clip((grid.reshape(1, rows * height, columns * width, channels) + 1.0) / 2.0, 0.0, 1.0)


class TensorBoardLogger:
    """Callbacks for `loop.run_active_learning` that write TensorBoard summaries to `log_dir`.

    `hyperparameters` maps names to bool, int, float or str values (the HParams
    plugin's table). The image grid shows `images_per_class` samples for each
    of the first `max_classes` classes, from latents drawn once with `seed`.
    """

    def __init__(self, log_dir, hyperparameters, network_config, images_per_class=8, max_classes=10, seed=0):
        self._writer = tf.summary.create_file_writer(log_dir)
        self._columns = images_per_class
        classes = min(network_config.num_classes, max_classes)
        rng = np.random.default_rng(seed)
        self._latents = rng.standard_normal((classes * images_per_class, network_config.latent_dim)).astype(
            np.float32)
        self._labels = np.eye(network_config.num_classes, dtype=np.float32)[
            np.repeat(np.arange(classes), images_per_class)]
        with self._writer.as_default():
            hparams_api.hparams_config(
                hparams=[hparams_api.HParam(name) for name in sorted(hyperparameters)],
                metrics=[hparams_api.Metric(ACCURACY_TAG, display_name="test accuracy")])
            hparams_api.hparams(hyperparameters)
        self._writer.flush()

    def on_train_step(self, step, losses):
        """Writes every loss of training step `step` (counted across cycles)."""
        with self._writer.as_default(step=step):
            for name, value in losses.items():
                tf.summary.scalar(f"losses/{name}", value)

    def on_cycle_end(self, cycle, record, model):
        """Writes the test accuracy (by labels) and, given an ARALModel, a grid of generated images per class
        (by cycle); `model` is None for methods that train no ARALModel."""
        with self._writer.as_default():
            tf.summary.scalar(ACCURACY_TAG, record["test_accuracy"], step=record["num_labeled"])
            if model is not None:
                images = model.generator(self._latents, self._labels, training=False)
                tf.summary.image(IMAGES_TAG, image_grid(images, self._columns), step=cycle,
                                 description="G(z, y): one row per class y, the same latents z every cycle")
        self._writer.flush()

    def close(self):
        self._writer.close()
