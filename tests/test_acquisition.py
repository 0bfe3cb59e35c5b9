"""Acquisition: lowest S(E(x, C(x))), index-aligned, never a labeled index, never reads labels."""

import inspect

import numpy as np
import tensorflow as tf

from aral_tf import acquisition
from tests.helpers import two_cpu_strategy


class MeanPixelScorer:
    """Stands in for the model: the score of an image is its mean pixel value / 255."""

    def acquisition_scores(self, images):
        score = tf.reduce_mean(tf.cast(images, tf.float32), axis=[1, 2, 3]) / 255.0
        return score, tf.zeros([tf.shape(images)[0], 2]), tf.zeros([tf.shape(images)[0], 3])


class MeanPixelScorerWithClasses(MeanPixelScorer):
    """C predicts class (pixel value // 100): images 0-99 are class 0, 100-199 class 1, 200-255 class 2."""

    def acquisition_scores(self, images):
        score, latent, _ = super().acquisition_scores(images)
        classes = tf.cast(tf.reshape(images[:, 0, 0, 0], [-1]), tf.int32) // 100
        return score, latent, tf.one_hot(classes, 3) * 5.0


def constant_images(values):
    return np.asarray(values, dtype=np.uint8).reshape(-1, 1, 1, 1) * np.ones((1, 2, 2, 1), np.uint8)


class SelectLowestTest(tf.test.TestCase):

    def test_picks_lowest_scores_as_pool_indices(self):
        selected = acquisition.select_lowest(np.array([0.9, 0.1, 0.5, 0.2]), np.array([10, 11, 12, 13]), 2)
        self.assertAllEqual(selected, [11, 13])
        self.assertEqual(selected.dtype, np.int64)

    def test_ties_go_to_the_smaller_index(self):
        self.assertAllEqual(acquisition.select_lowest(np.array([0.5, 0.5, 0.5]), np.array([7, 3, 5]), 2), [3, 5])

    def test_rejects_budget_outside_pool(self):
        with self.assertRaisesRegex(ValueError, "budget"):
            acquisition.select_lowest(np.array([0.1]), np.array([4]), 2)
        with self.assertRaisesRegex(ValueError, "budget"):
            acquisition.select_lowest(np.array([0.1]), np.array([4]), 0)

    def test_rejects_misaligned_scores(self):
        with self.assertRaisesRegex(ValueError, "scores"):
            acquisition.select_lowest(np.array([0.1, 0.2]), np.array([4]), 1)


class SelectLowestPerClassTest(tf.test.TestCase):

    def test_takes_lowest_scores_round_by_round_over_classes(self):
        scores = np.array([0.1, 0.2, 0.3, 0.05, 0.9, 0.4])
        classes = np.array([0, 0, 0, 1, 1, 2])
        indices = np.array([10, 11, 12, 13, 14, 15])
        # Round 0: class 1 (0.05), class 0 (0.1), class 2 (0.4); round 1: class 0 (0.2), class 1 (0.9); round 2: 12.
        self.assertAllEqual(acquisition.select_lowest_per_class(scores, classes, indices, 4), [13, 10, 15, 11])
        self.assertAllEqual(acquisition.select_lowest_per_class(scores, classes, indices, 6),
                            [13, 10, 15, 11, 14, 12])

    def test_one_class_is_plain_lowest(self):
        scores = np.array([0.5, 0.1, 0.5, 0.3])
        indices = np.array([9, 4, 2, 7])
        self.assertAllEqual(acquisition.select_lowest_per_class(scores, np.zeros(4), indices, 3),
                            acquisition.select_lowest(scores, indices, 3))

    def test_rejects_bad_budget_and_misaligned_classes(self):
        with self.assertRaisesRegex(ValueError, "budget"):
            acquisition.select_lowest_per_class(np.array([0.1]), np.array([0]), np.array([4]), 2)
        with self.assertRaisesRegex(ValueError, "classes"):
            acquisition.select_lowest_per_class(np.array([0.1]), np.array([0, 1]), np.array([4]), 1)


class SelectQueriesTest(tf.test.TestCase):

    def test_balanced_selection_uses_predicted_classes(self):
        # Lowest scores overall are 5, 10, 30 (all class 0); balanced takes one per predicted class first.
        values = [30, 200, 10, 150, 40, 120, 5, 250, 60]
        images = constant_images(values)
        plain = acquisition.select_queries(MeanPixelScorerWithClasses(), images, [], budget=3, batch_size=2)
        balanced = acquisition.select_queries(MeanPixelScorerWithClasses(), images, [], budget=3, batch_size=2,
                                              balance_classes=True)
        self.assertAllEqual(plain, [6, 2, 0])
        self.assertAllEqual(balanced, [6, 5, 1])
        balanced = acquisition.select_queries(MeanPixelScorerWithClasses(), images, [6, 5], budget=4,
                                              batch_size=4, balance_classes=True)
        self.assertAllEqual(balanced, [2, 3, 1, 0])

    def test_selects_lowest_scoring_unlabeled_images_by_pool_index(self):
        # Pool index i has mean pixel values[i]; the lowest values are at 6, 2, 0, 4 but 6 and 0 are labeled.
        values = [30, 200, 10, 90, 40, 120, 5, 250, 60]
        images = constant_images(values)
        selected = acquisition.select_queries(MeanPixelScorer(), images, labeled_indices=[0, 6], budget=3,
                                              batch_size=2)
        self.assertAllEqual(selected, [2, 4, 8])

    def test_never_returns_a_labeled_index(self):
        images = constant_images(np.arange(50))
        labeled = np.arange(0, 50, 2)
        selected = acquisition.select_queries(MeanPixelScorer(), images, labeled, budget=25, batch_size=7)
        self.assertEmpty(np.intersect1d(selected, labeled))
        self.assertLen(np.unique(selected), 25)

    def test_scores_are_aligned_with_indices_across_batches(self):
        images = constant_images(np.arange(23) * 10)
        indices = np.array([22, 0, 5, 13, 7])
        scores = acquisition.score_pool(MeanPixelScorer(), images, indices, batch_size=2)
        self.assertAllClose(scores, indices * 10 / 255.0)

    def test_scoring_through_two_replicas_gives_the_same_scores(self):
        images = constant_images(np.arange(23) * 10)
        indices = np.array([22, 0, 5, 13, 7, 1, 2])
        strategy = two_cpu_strategy()
        scores = acquisition.score_pool(MeanPixelScorer(), images, indices, batch_size=3, strategy=strategy)
        self.assertAllClose(scores, indices * 10 / 255.0)

    def test_acquisition_takes_no_labels(self):
        for function in (acquisition.select_queries, acquisition.score_pool, acquisition.select_lowest,
                         acquisition.select_lowest_per_class):
            parameters = set(inspect.signature(function).parameters)
            self.assertFalse({"labels", "y", "y_train", "pool_labels"} & parameters, function.__name__)


class UnlabeledIndicesTest(tf.test.TestCase):

    def test_complement_of_labeled(self):
        self.assertAllEqual(acquisition.unlabeled_indices(6, [4, 1]), [0, 2, 3, 5])


if __name__ == "__main__":
    tf.test.main()
