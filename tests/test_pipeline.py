"""BatchStream, LabeledBatches and the input pipeline: seeded batches in a fixed order."""

import json

import numpy as np
import tensorflow as tf

from aral_tf import pipeline
from aral_tf.model import BATCH_KEYS
from tests.helpers import tiny_images


class BatchStreamTest(tf.test.TestCase):

    def make_stream(self, seed=0):
        images = tiny_images(30)
        return pipeline.BatchStream(images, labels=np.array([2, 0, 1]), labeled_indices=np.array([3, 7, 9]),
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
            pipeline.BatchStream(tiny_images(5), np.array([0]), np.array([1, 2]), 4, 4, 3, 0)


class PoolBatchesTest(tf.test.TestCase):

    def test_draws_both_streams_from_the_whole_pool_without_labels(self):
        images = np.arange(6, dtype=np.uint8).reshape(6, 1, 1, 1)
        stream = pipeline.PoolBatches(images, batch_size=200, latent_dim=4, num_classes=3, seed=0)
        batch = stream.next()
        self.assertEqual(set(batch), set(BATCH_KEYS) - {"labels"})
        for key in ("labeled_images", "unlabeled_images"):
            self.assertEqual(set(batch[key].ravel()), set(range(6)))
        self.assertEqual(batch["prior_latent"].shape, (200, 4))
        self.assertEqual(set(batch["prior_labels"]), {0, 1, 2})
        same = pipeline.PoolBatches(images, batch_size=200, latent_dim=4, num_classes=3, seed=0).next()
        for key in batch:
            self.assertAllEqual(batch[key], same[key])


class InputPipelineTest(tf.test.TestCase):

    def test_yields_the_streams_next_batches_in_order(self):
        def stream():
            return pipeline.BatchStream(tiny_images(12), np.array([0, 1]), np.array([2, 5]), 4, 4, 3, seed=9)

        expected = stream()
        batches = list(pipeline.input_pipeline(stream(), 3))
        self.assertLen(batches, 3)
        for batch in batches:
            for name, value in expected.next().items():
                self.assertAllEqual(batch[name], value, msg=name)


class LabeledBatchesTest(tf.test.TestCase):

    def test_draws_only_labeled_images_with_their_labels(self):
        images = tiny_images(10)
        batch = pipeline.LabeledBatches(images, np.array([2, 0]), np.array([7, 3]), 6, seed=1).next()
        for image, label in zip(batch["labeled_images"], batch["labels"]):
            index = 7 if label == 2 else 3
            np.testing.assert_array_equal(image, images[index])
        assert len(batch["labels"]) == 6
        with self.assertRaisesRegex(ValueError, "one label per labeled index"):
            pipeline.LabeledBatches(images, np.array([2]), np.array([7, 3]), 6, seed=1)
