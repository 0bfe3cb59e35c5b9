"""TensorBoard summaries: the image grid, and the tags, steps and hyperparameters in the event files."""

import tempfile

import keras
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
import tensorflow as tf

from aral_tf import summaries
from aral_tf.model import ARALModel
from tests.helpers import tiny_config


class ImageGridTest(tf.test.TestCase):

    def test_rows_and_columns_of_tiles_scaled_to_unit_range(self):
        # Four 1x2 single-channel images with values -1, 0, 1, 0.5 in two columns.
        images = np.array([-1.0, 0.0, 1.0, 0.5]).reshape(4, 1, 1, 1) * np.ones((1, 1, 2, 1))
        grid = summaries.image_grid(images, columns=2)
        self.assertEqual(grid.shape, (1, 2, 4, 1))
        self.assertAllClose(grid[0, :, :, 0], [[0.0, 0.0, 0.5, 0.5], [1.0, 1.0, 0.75, 0.75]])


class TensorBoardLoggerTest(tf.test.TestCase):

    def test_event_files_hold_losses_accuracy_images_and_hparams(self):
        log_dir = self.enter_context(tempfile.TemporaryDirectory())
        keras.utils.set_random_seed(0)
        model = ARALModel(tiny_config())
        hyperparameters = {"width": 0.02, "dataset": "tiny", "jit_compile": False}
        logger = summaries.TensorBoardLogger(log_dir, hyperparameters, model.network_config, images_per_class=2)
        for step in (1, 2, 3):
            logger.on_train_step(step, {"loss_discriminator": 0.5 * step, "loss_sampler": 1.0})
        logger.on_cycle_end(0, {"test_accuracy": 0.25, "num_labeled": 4}, model)
        logger.on_cycle_end(1, {"test_accuracy": 0.5, "num_labeled": 7}, model)
        logger.close()

        events = EventAccumulator(log_dir, size_guidance={"tensors": 0})
        events.Reload()
        expected_tags = {"losses/loss_discriminator", "losses/loss_sampler", "test_accuracy", "generated_images",
                         "_hparams_/experiment", "_hparams_/session_start_info"}
        self.assertContainsSubset(expected_tags, events.Tags()["tensors"])
        losses = events.Tensors("losses/loss_discriminator")
        self.assertEqual([event.step for event in losses], [1, 2, 3])
        self.assertAllClose([tf.make_ndarray(event.tensor_proto) for event in losses], [0.5, 1.0, 1.5])
        accuracy = events.Tensors("test_accuracy")
        self.assertEqual([event.step for event in accuracy], [4, 7])
        self.assertAllClose([tf.make_ndarray(event.tensor_proto) for event in accuracy], [0.25, 0.5])
        images = events.Tensors("generated_images")
        self.assertEqual([event.step for event in images], [0, 1])
        width, height = tf.make_ndarray(images[0].tensor_proto)[:2]
        # Three classes of 8x8 images, two per class: 3 rows and 2 columns of tiles.
        self.assertEqual((int(width), int(height)), (16, 24))

        start = events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
        hparams = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams
        self.assertEqual(hparams["dataset"].string_value, "tiny")
        self.assertAllClose(hparams["width"].number_value, 0.02)
        self.assertFalse(hparams["jit_compile"].bool_value)

    def test_methods_without_an_aral_model_log_accuracy_but_no_images(self):
        log_dir = self.enter_context(tempfile.TemporaryDirectory())
        logger = summaries.TensorBoardLogger(log_dir, {"method": "entropy"}, tiny_config())
        logger.on_cycle_end(0, {"test_accuracy": 0.75, "num_labeled": 4}, None)
        logger.close()
        events = EventAccumulator(log_dir, size_guidance={"tensors": 0})
        events.Reload()
        self.assertIn("test_accuracy", events.Tags()["tensors"])
        self.assertNotIn("generated_images", events.Tags()["tensors"])


if __name__ == "__main__":
    tf.test.main()
