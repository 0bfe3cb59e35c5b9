"""Heuristics: each score and order on a pool where the answer is known; index-aligned through replicas;
never a labeled index; never a pool label."""

import inspect

import numpy as np
import pytest
import tensorflow as tf

from aral_tf import heuristics
from tests.helpers import two_cpu_strategy


class MeanPixelLearner:
    """Stands in for a learner: an image's score is its mean pixel / 255; C predicts class (pixel // 100),
    so images 0-99 are class 0, 100-199 class 1, 200-255 class 2; its features are the mean pixel."""

    acquisition_keys = ("score", "latent", "logits", "features")

    def acquisition_outputs(self, images):
        pixels = tf.cast(images, tf.float32)
        classes = tf.cast(tf.reshape(images[:, 0, 0, 0], [-1]), tf.int32) // 100
        features = tf.reduce_mean(pixels, axis=[1, 2])
        return {"score": tf.reduce_mean(pixels, axis=[1, 2, 3]) / 255.0, "logits": tf.one_hot(classes, 3) * 5.0,
                "features": features, "latent": features}


def constant_images(values):
    return np.asarray(values, dtype=np.uint8).reshape(-1, 1, 1, 1) * np.ones((1, 2, 2, 1), np.uint8)


def request(images, labeled=(), budget=3, batch_size=2, strategy=None, cycle=0, seed=0):
    return heuristics.Request(MeanPixelLearner(), images, np.asarray(labeled, np.int64), budget, cycle, batch_size,
                              seed, strategy)


class SelectLowestTest(tf.test.TestCase):

    def test_picks_lowest_scores_as_pool_indices(self):
        selected = heuristics.select_lowest(np.array([0.9, 0.1, 0.5, 0.2]), np.array([10, 11, 12, 13]), 2)
        self.assertAllEqual(selected, [11, 13])
        self.assertEqual(selected.dtype, np.int64)

    def test_ties_go_to_the_smaller_index(self):
        self.assertAllEqual(heuristics.select_lowest(np.array([0.5, 0.5, 0.5]), np.array([7, 3, 5]), 2), [3, 5])

    def test_rejects_budget_outside_pool(self):
        with self.assertRaisesRegex(ValueError, "budget"):
            heuristics.select_lowest(np.array([0.1]), np.array([4]), 2)
        with self.assertRaisesRegex(ValueError, "budget"):
            heuristics.select_lowest(np.array([0.1]), np.array([4]), 0)

    def test_rejects_misaligned_scores(self):
        with self.assertRaisesRegex(ValueError, "scores"):
            heuristics.select_lowest(np.array([0.1, 0.2]), np.array([4]), 1)


class SelectLowestPerClassTest(tf.test.TestCase):

    def test_takes_lowest_scores_round_by_round_over_classes(self):
        scores = np.array([0.1, 0.2, 0.3, 0.05, 0.9, 0.4])
        classes = np.array([0, 0, 0, 1, 1, 2])
        indices = np.array([10, 11, 12, 13, 14, 15])
        # Round 0: class 1 (0.05), class 0 (0.1), class 2 (0.4); round 1: class 0 (0.2), class 1 (0.9); round 2: 12.
        self.assertAllEqual(heuristics.select_lowest_per_class(scores, classes, indices, 4), [13, 10, 15, 11])
        self.assertAllEqual(heuristics.select_lowest_per_class(scores, classes, indices, 6),
                            [13, 10, 15, 11, 14, 12])

    def test_one_class_is_plain_lowest(self):
        scores = np.array([0.5, 0.1, 0.5, 0.3])
        indices = np.array([9, 4, 2, 7])
        self.assertAllEqual(heuristics.select_lowest_per_class(scores, np.zeros(4), indices, 3),
                            heuristics.select_lowest(scores, indices, 3))

    def test_rejects_bad_budget_and_misaligned_classes(self):
        with self.assertRaisesRegex(ValueError, "budget"):
            heuristics.select_lowest_per_class(np.array([0.1]), np.array([0]), np.array([4]), 2)
        with self.assertRaisesRegex(ValueError, "classes"):
            heuristics.select_lowest_per_class(np.array([0.1]), np.array([0, 1]), np.array([4]), 1)


class HeuristicTest(tf.test.TestCase):

    def test_lowest_selects_the_lowest_scoring_unlabeled_images_by_pool_index(self):
        # Pool index i has mean pixel values[i]; the lowest values are at 6, 2, 0, 4 but 6 and 0 are labeled.
        images = constant_images([30, 200, 10, 90, 40, 120, 5, 250, 60])
        self.assertAllEqual(heuristics.LowestScore().select(request(images, labeled=[0, 6])), [2, 4, 8])

    def test_class_balanced_takes_one_per_predicted_class_first(self):
        # Lowest scores overall are 5, 10, 30 (all class 0); balanced takes one per predicted class first.
        images = constant_images([30, 200, 10, 150, 40, 120, 5, 250, 60])
        self.assertAllEqual(heuristics.LowestScore().select(request(images)), [6, 2, 0])
        self.assertAllEqual(heuristics.ClassBalanced().select(request(images)), [6, 5, 1])
        self.assertAllEqual(heuristics.ClassBalanced().select(request(images, [6, 5], budget=4, batch_size=4)),
                            [2, 3, 1, 0])

    def test_coreset_picks_the_farthest_from_the_labeled_images(self):
        # Features are the pixel values; labeled 0 and 100: the farthest is 250, then 50 (50 from both).
        images = constant_images([0, 100, 250, 50, 90, 10])
        self.assertAllEqual(heuristics.CoreSet().select(request(images, labeled=[0, 1], budget=2)), [2, 3])

    def test_typiclust_queries_the_uncovered_clusters_of_the_features(self):
        # Features are pixel values in three groups; 11 (in the group near 10) is labeled, so the two picks
        # are the most typical points of the other groups, the larger (near 200) first: 203 (mean distance
        # 25/6 to the other six), then 102 (14/5, tied with 103; the smaller index wins).
        values = [10, 11, 13, 100, 101, 102, 103, 105, 109, 200, 201, 202, 203, 204, 209, 215]
        images = constant_images(values)
        self.assertAllEqual(heuristics.TypiClust().select(request(images, labeled=[1], budget=2)), [12, 5])

    def test_lowest_in_clusters_spreads_the_lowest_scores_over_the_codes(self):
        # Scores and codes are the pixel values: plain lowest takes 10, 11, 12; one per cluster takes 10, 100, 200.
        images = constant_images([100, 10, 200, 11, 101, 12, 201])
        self.assertAllEqual(heuristics.LowestScore().select(request(images)), [1, 3, 5])
        self.assertAllEqual(heuristics.LowestInClusters().select(request(images)), [1, 0, 2])

    def test_entropy_reads_the_logits(self):
        # Every image's prediction is one confident class: equal entropy, so ties go to the smaller index.
        images = constant_images([30, 200, 10, 150])
        self.assertAllEqual(heuristics.MaxEntropy().select(request(images, labeled=[0], budget=2)), [1, 2])

    def test_never_returns_a_labeled_index(self):
        images = constant_images(np.arange(50))
        labeled = np.arange(0, 50, 2)
        for name in ("lowest", "class_balanced", "random", "entropy", "coreset", "typiclust", "lowest_in_clusters"):
            selected = heuristics.make_heuristic(name).select(request(images, labeled, budget=25, batch_size=7))
            self.assertEmpty(np.intersect1d(selected, labeled))
            self.assertLen(np.unique(selected), 25)

    def test_pool_outputs_are_aligned_with_indices_across_batches_and_replicas(self):
        images = constant_images(np.arange(23) * 10)
        indices = np.array([22, 0, 5, 13, 7, 1, 2])
        learner = MeanPixelLearner()
        for batch_size, strategy in ((2, None), (3, two_cpu_strategy())):
            scores = request(images, batch_size=batch_size, strategy=strategy).pool_outputs(
                lambda batch: learner.acquisition_outputs(batch)["score"], indices)
            self.assertAllClose(scores, indices * 10 / 255.0)

    def test_supports_what_the_learner_gives(self):
        learner = MeanPixelLearner()
        self.assertTrue(heuristics.LowestScore().supports(learner))
        self.assertTrue(heuristics.Uniform().supports(learner))
        self.assertFalse(heuristics.BALD().supports(learner))  # no mc_probabilities

    def test_acquisition_takes_no_labels(self):
        for function in (heuristics.Request, heuristics.Heuristic.select, heuristics.select_lowest,
                         heuristics.select_lowest_per_class, heuristics.k_center_greedy,
                         heuristics.random_selection, heuristics.kmeans, heuristics.typiclust,
                         heuristics.initial_selection, heuristics.lowest_in_clusters,
                         heuristics.pixel_initial_selection):
            parameters = set(inspect.signature(function).parameters)
            self.assertFalse({"labels", "y", "y_train", "pool_labels"} & parameters, function.__name__)

    def test_complement_of_labeled(self):
        self.assertAllEqual(heuristics.unlabeled_indices(6, [4, 1]), [0, 2, 3, 5])


def test_entropy_picks_the_most_uncertain():
    probabilities = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0], [0.9, 0.05, 0.05]])
    expected = [0.0, np.log(3), np.log(2), -(0.9 * np.log(0.9) + 0.1 * np.log(0.05))]
    np.testing.assert_allclose(heuristics.entropy(probabilities), expected, atol=1e-9)
    selected = heuristics.select_highest(heuristics.entropy(probabilities), np.array([10, 11, 12, 13]), 2)
    np.testing.assert_array_equal(selected, [11, 12])


def test_bald_picks_the_highest_mutual_information():
    # Image 0: the same 50/50 prediction in every pass (uncertain, but no disagreement: MI 0).
    # Image 1: passes alternate between two confident answers (MI ln 2). Image 2: confident and stable (MI 0).
    confident = [[1.0, 0.0], [0.0, 1.0]] * 2
    mc = np.array([[[0.5, 0.5]] * 4, confident, [[1.0, 0.0]] * 4])
    np.testing.assert_allclose(heuristics.mutual_information(mc), [0.0, np.log(2), 0.0], atol=1e-9)
    np.testing.assert_allclose(heuristics.entropy(mc.mean(axis=1))[:2], [np.log(2), np.log(2)])
    selected = heuristics.select_highest(heuristics.mutual_information(mc), np.array([7, 8, 9]), 1)
    np.testing.assert_array_equal(selected, [8])


def test_coreset_picks_the_farthest_points_greedily():
    labeled = np.array([[0.0, 0.0]])
    candidates = np.array([[1.0, 0.0], [10.0, 0.0], [9.0, 0.0], [0.0, 6.0], [0.0, 5.0]])
    # Farthest from the origin is (10, 0); then farthest from {origin, (10, 0)} is (0, 6), then (0, 5)'s
    # distance is 1 and (1, 0)'s is 1, so the smaller position wins the tie.
    np.testing.assert_array_equal(heuristics.k_center_greedy(candidates, labeled, 3, chunk=2), [1, 3, 0])


def test_random_is_reproducible_under_a_seed_and_changes_with_it():
    candidates = np.arange(100, 200)
    first = heuristics.random_selection(candidates, 10, seed=3, cycle=2)
    np.testing.assert_array_equal(first, heuristics.random_selection(candidates, 10, seed=3, cycle=2))
    assert first.dtype == np.int64 and len(np.unique(first)) == 10 and set(first) <= set(candidates)
    assert not np.array_equal(first, heuristics.random_selection(candidates, 10, seed=4, cycle=2))
    assert not np.array_equal(first, heuristics.random_selection(candidates, 10, seed=3, cycle=3))


def test_registry_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown selection 'margin'; choose one of lowest, class_balanced"):
        heuristics.make_heuristic("margin")
    assert heuristics.make_heuristic("bald", mc_passes=4).passes == 4


def test_typicality_is_the_inverse_mean_distance_to_the_nearest_neighbours():
    points = np.array([[0.0], [1.0], [3.0]])
    np.testing.assert_allclose(heuristics.typicality(points, neighbours=1), [1.0, 1.0, 0.5])
    # Two neighbours: mean distances (1 + 3) / 2, (1 + 2) / 2, (3 + 2) / 2.
    np.testing.assert_allclose(heuristics.typicality(points, neighbours=2, chunk=2), [1 / 2, 2 / 3, 1 / 2.5])
    np.testing.assert_allclose(heuristics.typicality(points, neighbours=20), [1 / 2, 2 / 3, 1 / 2.5])
    np.testing.assert_array_equal(heuristics.typicality(points[:1]), [0.0])


def _blobs(seed, sizes=(30, 40, 50)):
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    return np.concatenate([center + rng.normal(size=(size, 2)) for center, size in zip(centers, sizes)])


def test_kmeans_finds_separated_blobs_and_is_seeded():
    points = _blobs(0)
    assignment, centers = heuristics.kmeans(points, 3, seed=5)
    assert assignment.dtype == np.int64
    for start, stop in ((0, 30), (30, 70), (70, 120)):
        assert len(np.unique(assignment[start:stop])) == 1
        np.testing.assert_allclose(centers[assignment[start]], points[start:stop].mean(0))
    np.testing.assert_array_equal(heuristics.kmeans(points, 3, seed=5)[0], assignment)
    with pytest.raises(ValueError, match="4 clusters must be in 1..3"):
        heuristics.kmeans(points[:3], 4, seed=0)


def test_kmeans_with_more_clusters_than_distinct_points_leaves_none_empty():
    assignment, _ = heuristics.kmeans(np.zeros((6, 2)), 3, seed=0)
    assert sorted(np.bincount(assignment, minlength=3)) == [1, 1, 4]


def test_initial_selection_takes_the_most_typical_point_of_each_blob_largest_first():
    points = _blobs(1)
    picks = heuristics.initial_selection(points, 3, seed=0)
    np.testing.assert_array_equal((picks >= 70).astype(int) + (picks >= 30), [2, 1, 0])
    for pick, (start, stop) in zip(picks, ((70, 120), (30, 70), (0, 30))):
        assert pick == start + int(np.argmax(heuristics.typicality(points[start:stop])))


def test_typiclust_leaves_small_clusters_for_last():
    # Blob sizes 5 (an outlier group of at most MIN_CLUSTER_SIZE), 40, 50: the picks go 50, 40, 50 again;
    # the small blob only once the others have nothing left.
    points = _blobs(2, sizes=(5, 40, 50))
    picks = heuristics.typiclust(points, [], 3, seed=0)
    np.testing.assert_array_equal((picks >= 45).astype(int) + (picks >= 5), [2, 1, 2])
    picks = heuristics.typiclust(points, np.arange(5, 95), 2, seed=0)
    assert len(set(picks)) == 2 and set(picks) <= set(range(5))
    with pytest.raises(ValueError, match="budget 96 must be in 1..95"):
        heuristics.typiclust(points, [], 96, seed=0)


def test_lowest_in_clusters_orders_its_picks_by_score():
    codes = np.array([[0.0], [0.1], [10.0], [10.1]])
    scores = np.array([0.5, 0.4, 0.2, 0.3])
    np.testing.assert_array_equal(heuristics.lowest_in_clusters(scores, codes, 2, seed=0), [2, 1])


def test_pixel_initial_selection_takes_one_image_of_each_kind():
    # Three kinds of 4x4 images (dark, bright, half and half) with small seeded noise, 12 of each.
    rng = np.random.default_rng(0)
    kinds = [np.zeros((4, 4, 1)), np.full((4, 4, 1), 250.0), np.concatenate([np.zeros((2, 4, 1)),
                                                                            np.full((2, 4, 1), 250.0)])]
    images = np.concatenate([np.clip(kind + rng.normal(0, 3, (12, 4, 4, 1)), 0, 255) for kind in kinds])
    picks = heuristics.pixel_initial_selection(images.astype(np.uint8), 3, seed=0)
    assert sorted(picks // 12) == [0, 1, 2]
    np.testing.assert_array_equal(heuristics.pixel_initial_selection(images.astype(np.uint8), 3, seed=0), picks)


def test_pixel_points_scale_and_project_large_images():
    images = np.full((2, 2, 2, 1), 255, np.uint8)
    np.testing.assert_allclose(heuristics.pixel_points(images, seed=0), np.ones((2, 4)))
    large = np.random.default_rng(1).integers(0, 256, (5, 40, 40, 1), dtype=np.uint8)
    projected = heuristics.pixel_points(large, seed=0)
    assert projected.shape == (5, heuristics.MAX_PIXELS)
    flat = heuristics.pixel_points(large[:, :32, :32], seed=0)
    # The projection keeps distances to within a few per cent at 1,024 dimensions.
    ratio = np.linalg.norm(projected[0] - projected[1]) / np.linalg.norm(
        large[0].astype(float) / 127.5 - large[1].astype(float) / 127.5)
    assert 0.9 < ratio < 1.1 and flat.shape == (5, 1024)
