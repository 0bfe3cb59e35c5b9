"""BatchStream, Trainer and predict_in_batches."""

import json

import numpy as np
import keras
import tensorflow as tf

from aral_tf import training
from aral_tf.model import BATCH_KEYS, ARALModel
from tests.helpers import tiny_config, tiny_images


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


class TrainerTest(tf.test.TestCase):

    def test_train_returns_mean_losses_and_detects_divergence(self):
        keras.utils.set_random_seed(0)
        model = ARALModel(tiny_config())
        stream = training.BatchStream(tiny_images(12), np.array([0, 1, 2]), np.array([0, 1, 2]), 4, 4, 3, 0)
        trainer = training.Trainer(model, training.make_strategy("default"))
        finished = []
        sums = {"loss_sampler": 10.0}
        losses = trainer.train(stream, 3, verbose=False, first_step=1, loss_sums=sums,
                               after_step=lambda step, sums: finished.append(step))
        self.assertEqual(finished, [2, 3])
        self.assertTrue(all(np.isfinite(v) for v in losses.values()))
        self.assertAllClose(losses["loss_sampler"], sums["loss_sampler"] / 3)
        self.assertGreater(sums["loss_sampler"], 10.0)
        model.discriminator.classifier.bias.assign(np.full(3, np.nan, np.float32))
        with self.assertRaisesRegex(FloatingPointError, "at step 1; training diverged"):
            trainer.train(stream, 1, verbose=False, after_step=lambda step, sums: finished.append(step))
        self.assertEqual(finished, [2, 3])

    def test_rejects_batch_not_divisible_by_replicas(self):
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            model = ARALModel(tiny_config())
        with self.assertRaisesRegex(ValueError, "not divisible"):
            training.Trainer(model, strategy).train_step({"labels": np.zeros(3)})

    def test_unknown_strategy(self):
        with self.assertRaisesRegex(ValueError, "unknown strategy"):
            training.make_strategy("quantum")


class PredictInBatchesTest(tf.test.TestCase):

    def test_results_follow_indices(self):
        images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
        result = training.predict_in_batches(lambda x: tf.reshape(x, [-1]), images, 3, indices=[9, 2, 4, 0])
        self.assertAllEqual(result, [9, 2, 4, 0])


if __name__ == "__main__":
    tf.test.main()
