"""Strategies, BatchStream, the input pipeline, Trainer and batched prediction through a strategy."""

import os
import socket
from unittest import mock

import json

import numpy as np
import keras
import tensorflow as tf

from aral_tf import training
from aral_tf.model import BATCH_KEYS, ARALModel
from tests.helpers import tiny_batch, tiny_config, tiny_images, two_cpu_strategy


class BatchStreamTest(tf.test.TestCase):

    def make_stream(self, seed=0):
        images = tiny_images(30)
        return training.BatchStream(images, labels=np.array([2, 0, 1]), labeled_indices=np.array([3, 7, 9]),
                                    batch_size=16, latent_dim=4, num_classes=3, seed=seed), images

    def test_same_seed_same_batches(self):
        first, _ = self.make_stream()
        second, _ = self.make_stream()
        for _ in range(3):
            a, b = first.next(), second.next()
            for key in a:
                self.assertAllEqual(a[key], b[key])

    def test_labeled_examples_carry_their_own_labels(self):
        stream, images = self.make_stream()
        batch = stream.next()
        label_of = {3: 2, 7: 0, 9: 1}
        for image, label in zip(batch["labeled_images"], batch["labels"]):
            matches = [index for index in label_of if np.array_equal(images[index], image)]
            self.assertLen(matches, 1)
            self.assertEqual(label_of[matches[0]], label)

    def test_unlabeled_examples_exclude_labeled_indices(self):
        stream, images = self.make_stream()
        for _ in range(5):
            for image in stream.next()["unlabeled_images"]:
                for index in (3, 7, 9):
                    self.assertFalse(np.array_equal(images[index], image))

    def test_batches_hold_exactly_the_keys_the_model_reads(self):
        self.assertEqual(set(self.make_stream()[0].next()), set(BATCH_KEYS))

    def test_random_draw_shapes(self):
        batch = self.make_stream()[0].next()
        self.assertEqual(batch["prior_latent"].shape, (16, 4))
        self.assertTrue(np.all((batch["prior_labels"] >= 0) & (batch["prior_labels"] < 3)))

    def test_generator_state_survives_json_and_continues_the_stream(self):
        first, _ = self.make_stream()
        first.next()
        state = json.loads(json.dumps(first.rng_state))
        second, _ = self.make_stream(seed=99)
        second.rng_state = state
        expected, continued = first.next(), second.next()
        for key, value in expected.items():
            self.assertAllEqual(continued[key], value)

    def test_rejects_mismatched_labels(self):
        with self.assertRaisesRegex(ValueError, "one label per labeled index"):
            training.BatchStream(tiny_images(5), np.array([0]), np.array([1, 2]), 4, 4, 3, 0)


class StrategyTest(tf.test.TestCase):

    def test_auto_is_mirrored_only_with_several_gpus(self):
        self.assertEqual(training.resolve_strategy_name("auto", num_gpus=2), "mirrored")
        self.assertEqual(training.resolve_strategy_name("auto", num_gpus=1), "default")
        self.assertEqual(training.resolve_strategy_name("auto", num_gpus=0), "default")
        self.assertEqual(training.resolve_strategy_name("default", num_gpus=4), "default")

    def test_auto_on_this_cpu_host_is_one_replica(self):
        strategy = training.make_strategy("auto")
        self.assertEqual(strategy.num_replicas_in_sync, 1)
        self.assertTrue(training.is_chief(strategy))

    def test_unknown_strategy(self):
        with self.assertRaisesRegex(ValueError, "unknown strategy"):
            training.make_strategy("quantum")

    def test_tpu_needs_an_address(self):
        with self.assertRaisesRegex(training.StrategyError, "no TPU address"):
            training.make_strategy("tpu")

    def test_unreachable_tpu_address_fails_fast(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        for address in (f"grpc://127.0.0.1:{port}", "grpc://127.0.0.1", "grpc://127.0.0.1:99999"):
            with self.assertRaisesRegex(training.StrategyError, "cannot reach"):
                training.make_strategy("tpu", tpu=address)

    def test_malformed_tf_config_is_rejected_before_building_the_strategy(self):
        for text, message in (("{not json", "not JSON"), ('{"cluster": {}}', "needs"),
                              ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}',
                               "not in its cluster")):
            with mock.patch.dict(os.environ, {"TF_CONFIG": text}):
                with self.assertRaisesRegex(training.StrategyError, message):
                    training.make_strategy("multi_worker")


class SplitAcrossReplicasTest(tf.test.TestCase):

    def test_replica_r_gets_the_r_th_slice(self):
        strategy = two_cpu_strategy()
        batch = {"images": np.arange(6).reshape(6, 1), "labels": np.arange(6) * 10}
        distributed = training.split_across_replicas(strategy, batch)
        first, second = strategy.experimental_local_results(distributed)
        self.assertAllEqual(first["images"], [[0], [1], [2]])
        self.assertAllEqual(second["labels"], [30, 40, 50])

    def test_one_replica_keeps_the_batch(self):
        batch = np.arange(5)
        self.assertIs(training.split_across_replicas(training.make_strategy("default"), batch), batch)

    def test_rejects_batch_not_divisible_by_replicas(self):
        strategy = two_cpu_strategy()
        with self.assertRaisesRegex(ValueError, "not divisible"):
            training.split_across_replicas(strategy, {"labels": np.zeros(3)})


class InputPipelineTest(tf.test.TestCase):

    def test_yields_the_streams_next_batches_in_order(self):
        def stream():
            return training.BatchStream(tiny_images(12), np.array([0, 1]), np.array([2, 5]), 4, 4, 3, seed=9)

        expected = stream()
        batches = list(training.input_pipeline(stream(), 3))
        self.assertLen(batches, 3)
        for batch in batches:
            for name, value in expected.next().items():
                self.assertAllEqual(batch[name], value, msg=name)


class TrainerTest(tf.test.TestCase):

    def test_train_returns_mean_losses_and_detects_divergence(self):
        keras.utils.set_random_seed(0)
        model = ARALModel(tiny_config())
        stream = training.BatchStream(tiny_images(12), np.array([0, 1, 2]), np.array([0, 1, 2]), 4, 4, 3, 0)
        trainer = training.Trainer(model, training.make_strategy("default"))
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

    def test_after_step_hears_every_step_with_its_losses(self):
        keras.utils.set_random_seed(0)
        model = ARALModel(tiny_config())
        stream = training.BatchStream(tiny_images(12), np.array([0, 1, 2]), np.array([0, 1, 2]), 4, 4, 3, 0)
        heard = []
        training.Trainer(model, training.make_strategy("default")).train(
            stream, 3, verbose=False,
            after_step=lambda trained: heard.append((trained.step, dict(trained.losses))))
        self.assertEqual([step for step, _ in heard], [1, 2, 3])
        self.assertIn("loss_sampler", heard[0][1])
        self.assertNotEqual(heard[0][1]["loss_sampler"], heard[2][1]["loss_sampler"])

    def test_stream_state_of_a_step_is_right_after_its_own_batch(self):
        """The pipeline draws ahead; each step reports the state a resumed run must continue from."""
        def stream():
            return training.BatchStream(tiny_images(12), np.array([0, 1, 2]), np.array([0, 1, 2]), 4, 4, 3, 5)

        keras.utils.set_random_seed(0)
        ahead = stream()
        heard = []
        training.Trainer(ARALModel(tiny_config()), training.make_strategy("default")).train(
            ahead, 6, verbose=False, after_step=lambda trained: heard.append(trained.stream_state))
        reference = stream()
        for state in heard:
            reference.next()
            self.assertEqual(state, reference.rng_state)
        self.assertNotEqual(heard[2], heard[3])

    def test_training_resumed_mid_way_ends_with_the_same_weights(self):
        """Stopped after step 3 of 7 and continued from that step's stream state: bit-identical weights."""
        images, labeled = tiny_images(12), np.array([0, 1, 2])

        def model_and_stream():
            keras.utils.set_random_seed(0)
            model = ARALModel(tiny_config(noise=0.3))
            return model, training.Trainer(model, training.make_strategy("default")), training.BatchStream(
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
        resumed = training.BatchStream(images, labeled, labeled, 4, 4, 3, seed=99)
        resumed.rng_state = saved["state"]
        trainer.train(resumed, 7, verbose=False, first_step=3, loss_sums=saved["sums"])
        for want, got in zip(expected, model.get_weights()):
            self.assertAllEqual(got, want)

    def test_xla_compiled_step_matches_the_graph_step(self):
        config = tiny_config()  # no noise layers: XLA draws other random numbers
        batch = tiny_batch(config, batch_size=8)
        losses, weights = [], []
        for jit_compile in (False, True):
            keras.utils.set_random_seed(4)
            model = ARALModel(config)
            losses.append(training.Trainer(model, training.make_strategy("default"),
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
            return tf.reshape(tf.cast(x, tf.float32), [-1]) * 2, x

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
