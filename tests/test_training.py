"""Trainer (the distributed step, resumption, XLA) and batched prediction through a strategy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from aral_tf import training
from aral_tf.distribution import make_strategy
from aral_tf.model import ARALModel
from aral_tf.pipeline import BatchStream
from tests.helpers import tiny_batch, tiny_config, tiny_images, two_cpu_strategy


class TrainerTest(tf.test.TestCase):

    @pytest.mark.slow
    def test_train_returns_mean_losses_and_detects_divergence(self):
        keras.utils.set_random_seed(0)
        model = ARALModel(tiny_config())
        stream = BatchStream(tiny_images(12), np.array([0, 1, 2]), np.array([0, 1, 2]), 4, 4, 3, 0)
        trainer = training.Trainer(model, make_strategy("default"))
        finished = []
        sums = {"loss_sampler": 10.0}
        losses = trainer.train(stream, 3, verbose=False, first_step=1, loss_sums=sums,
                               after_step=lambda trained: finished.append(trained.step))
        self.assertEqual(finished, [2, 3])
        self.assertTrue(all(np.isfinite(v) for v in losses.values()))
        self.assertAllClose(losses["loss_sampler"], sums["loss_sampler"] / 3)
        self.assertGreater(sums["loss_sampler"], 10.0)
        model.discriminator.classifier.bias.assign(np.full(3, np.nan, np.float32))
        with self.assertRaisesRegex(FloatingPointError, "at step 1; training diverged"):
            trainer.train(stream, 1, verbose=False, after_step=lambda trained: finished.append(trained.step))
        self.assertEqual(finished, [2, 3])

    @pytest.mark.slow
    def test_after_step_hears_every_step_with_its_losses(self):
        keras.utils.set_random_seed(0)
        model = ARALModel(tiny_config())
        stream = BatchStream(tiny_images(12), np.array([0, 1, 2]), np.array([0, 1, 2]), 4, 4, 3, 0)
        heard = []
        training.Trainer(model, make_strategy("default")).train(
            stream, 3, verbose=False,
            after_step=lambda trained: heard.append((trained.step, dict(trained.losses))))
        self.assertEqual([step for step, _ in heard], [1, 2, 3])
        self.assertIn("loss_sampler", heard[0][1])
        self.assertNotEqual(heard[0][1]["loss_sampler"], heard[2][1]["loss_sampler"])

    @pytest.mark.slow
    def test_stream_state_of_a_step_is_right_after_its_own_batch(self):
        """The pipeline draws ahead; each step reports the state a resumed run must continue from."""
        def stream():
            return BatchStream(tiny_images(12), np.array([0, 1, 2]), np.array([0, 1, 2]), 4, 4, 3, 5)

        keras.utils.set_random_seed(0)
        ahead = stream()
        heard = []
        training.Trainer(ARALModel(tiny_config()), make_strategy("default")).train(
            ahead, 6, verbose=False, after_step=lambda trained: heard.append(trained.stream_state))
        reference = stream()
        for state in heard:
            reference.next()
            self.assertEqual(state, reference.rng_state)
        self.assertNotEqual(heard[2], heard[3])

    @pytest.mark.slow
    def test_training_resumed_mid_way_ends_with_the_same_weights(self):
        """Stopped after step 3 of 7 and continued from that step's stream state: bit-identical weights."""
        images, labeled = tiny_images(12), np.array([0, 1, 2])

        def model_and_stream():
            keras.utils.set_random_seed(0)
            model = ARALModel(tiny_config(noise=0.3))
            return model, training.Trainer(model, make_strategy("default")), BatchStream(
                images, labeled, labeled, 4, 4, 3, seed=5)

        model, trainer, stream = model_and_stream()
        trainer.train(stream, 7, verbose=False)
        expected = model.get_weights()

        model, trainer, stream = model_and_stream()
        saved = {}

        def stop_after_three(trained):
            if trained.step == 3:
                saved.update(state=trained.stream_state, sums=dict(trained.loss_sums))
                raise KeyboardInterrupt

        with self.assertRaises(KeyboardInterrupt):
            trainer.train(stream, 7, verbose=False, after_step=stop_after_three)
        resumed = BatchStream(images, labeled, labeled, 4, 4, 3, seed=99)
        resumed.rng_state = saved["state"]
        trainer.train(resumed, 7, verbose=False, first_step=3, loss_sums=saved["sums"])
        for want, got in zip(expected, model.get_weights()):
            self.assertAllEqual(got, want)

    @pytest.mark.slow
    def test_xla_compiled_step_matches_the_graph_step(self):
        config = tiny_config()  # no noise layers: XLA draws other random numbers
        batch = tiny_batch(config, batch_size=8)
        losses, weights = [], []
        for jit_compile in (False, True):
            keras.utils.set_random_seed(4)
            model = ARALModel(config)
            losses.append(training.Trainer(model, make_strategy("default"),
                                           jit_compile=jit_compile).train_step(batch))
            weights.append(model.get_weights())
        for name, value in losses[0].items():
            self.assertAllClose(losses[1][name], value, rtol=1e-4, atol=1e-5, msg=name)
        for expected, actual in zip(*weights):
            self.assertAllClose(actual, expected, rtol=1e-4, atol=1e-5)

    def test_xla_needs_a_single_replica(self):
        strategy = two_cpu_strategy()
        with strategy.scope():
            model = ARALModel(tiny_config())
        with self.assertRaisesRegex(ValueError, "XLA"):
            training.Trainer(model, strategy, jit_compile=True)


class RecordingImages:
    """A pool that records how many images each read asks for."""

    def __init__(self, images):
        self._images = images
        self.read_sizes = []

    def __len__(self):
        return len(self._images)

    def __getitem__(self, indices):
        self.read_sizes.append(len(indices))
        return self._images[indices]


class PredictInBatchesTest(tf.test.TestCase):

    def test_results_follow_indices(self):
        images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
        result = training.predict_in_batches(lambda x: tf.reshape(x, [-1]), images, 3, indices=[9, 2, 4, 0])
        self.assertAllEqual(result, [9, 2, 4, 0])

    def test_reads_one_batch_of_images_at_a_time(self):
        images = RecordingImages(np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1))
        result = training.predict_in_batches(lambda x: tf.reshape(x, [-1]), images, 8)
        self.assertAllEqual(result, np.arange(50))
        self.assertEqual(images.read_sizes, [8] * 6 + [2])

    def test_streams_through_replicas_in_order_with_one_trace(self):
        strategy = two_cpu_strategy()
        images = np.arange(23, dtype=np.uint8).reshape(23, 1, 1, 1)
        indices = np.arange(23)[::-1]
        def doubled(x):
            return tf.reshape(tf.cast(x, tf.float32), [-1]) * 2

        predictor = training.BatchPredictor(doubled, 5, strategy)
        self.assertEqual(predictor.padded_size, 6)
        self.assertAllEqual(predictor(images[indices[:5]]), indices[:5] * 2)
        self.assertAllEqual(predictor(images[indices[20:]]), indices[20:] * 2)
        traces = predictor._step.experimental_get_tracing_count()  # pylint: disable=protected-access
        self.assertEqual(traces, 1)
        result = training.predict_in_batches(lambda x: tf.reshape(tf.cast(x, tf.float32), [-1]), images, 5,
                                             indices=indices, strategy=strategy)
        self.assertAllEqual(result, indices)


if __name__ == "__main__":
    tf.test.main()
