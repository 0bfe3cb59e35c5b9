"""Acquisition functions as small classes in one registry (`HEURISTICS`): a score per unlabeled image and
an order, so that a method is a learner and a heuristic (`methods.METHODS`).

A heuristic sees pool images, which indices are labeled and the learner's `acquisition_outputs`; it
never reads pool labels, and returns unlabeled pool indices only. The scores and orders are NumPy
functions here, so that each can be checked on a pool where the right answer is known.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from aral_tf.training import predict_in_batches

# The seed stream of uniform selection: np.random.default_rng([seed, cycle, RANDOM_STREAM]).
RANDOM_STREAM = 7
# The seed stream of k-means in the clustering selections: [seed, cycle, CLUSTER_STREAM].
CLUSTER_STREAM = 11
# The seed stream of k-means for the initial set: [seed, INITIAL_STREAM].
INITIAL_STREAM = 13
# The initial set on pixels: larger images are projected at random to this many values.
MAX_PIXELS = 1024


def unlabeled_indices(pool_size, labeled_indices):
    """Sorted pool indices that are not in `labeled_indices`."""
    mask = np.ones(pool_size, dtype=bool)
    mask[np.asarray(labeled_indices, dtype=np.int64)] = False
    return np.flatnonzero(mask).astype(np.int64)


def _checked(scores, candidate_indices, budget):
    """Scores and int64 candidate indices as arrays; ValueError if misaligned or the budget does not fit."""
    scores = np.asarray(scores)
    candidate_indices = np.asarray(candidate_indices, dtype=np.int64)
    if scores.shape != candidate_indices.shape:
        raise ValueError(f"{scores.shape[0]} scores for {candidate_indices.shape[0]} candidates")
    if not 0 < budget <= len(candidate_indices):
        raise ValueError(f"budget {budget} must be in 1..{len(candidate_indices)} (the unlabeled pool)")
    return scores, candidate_indices


def select_lowest(scores, candidate_indices, budget):
    """The `budget` candidates with the lowest scores, as pool indices (int64).

    `scores[i]` belongs to `candidate_indices[i]`. Ties go to the smaller pool index, so the choice is
    deterministic.
    """
    scores, candidate_indices = _checked(scores, candidate_indices, budget)
    order = np.lexsort((candidate_indices, scores))
    return candidate_indices[order[:budget]]


def select_highest(scores, candidate_indices, budget):
    """The `budget` candidates with the highest scores (ties to the smaller pool index)."""
    return select_lowest(-np.asarray(scores, dtype=np.float64), candidate_indices, budget)


def select_lowest_per_class(scores, predicted_classes, candidate_indices, budget):
    """The lowest scores taken class by class: round r takes each predicted class's r-th lowest.

    Within a round, classes go in the order of those scores; a class with no candidates left drops
    out. `predicted_classes` are C's predictions, never pool labels. Ties go to the smaller pool index.
    """
    scores, candidate_indices = _checked(scores, candidate_indices, budget)
    predicted_classes = np.asarray(predicted_classes, dtype=np.int64)
    if predicted_classes.shape != candidate_indices.shape:
        raise ValueError(f"{predicted_classes.shape[0]} classes for {candidate_indices.shape[0]} candidates")
    by_class = np.lexsort((candidate_indices, scores, predicted_classes))
    sorted_classes = predicted_classes[by_class]
    rank_in_class = np.empty(len(by_class), dtype=np.int64)
    rank_in_class[by_class] = np.arange(len(by_class)) - np.searchsorted(sorted_classes, sorted_classes)
    order = np.lexsort((candidate_indices, scores, rank_in_class))
    return candidate_indices[order[:budget]]


def entropy(probabilities):
    """Shannon entropy (nats) of each row of class probabilities."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    return -np.sum(probabilities * np.log(np.clip(probabilities, 1e-12, 1.0)), axis=-1)


def mutual_information(mc_probabilities):
    """BALD's score from [N, passes, classes] MC probabilities: H(mean_t p_t) - mean_t H(p_t)."""
    mc_probabilities = np.asarray(mc_probabilities, dtype=np.float64)
    return entropy(mc_probabilities.mean(axis=1)) - entropy(mc_probabilities).mean(axis=1)


def _squared_distances(points, centers):
    return np.maximum((points ** 2).sum(1)[:, None] - 2.0 * points @ centers.T + (centers ** 2).sum(1)[None], 0.0)


def k_center_greedy(candidate_features, labeled_features, budget, chunk=4096):
    """Sener & Savarese's greedy core-set: positions (into the candidates) of `budget` picks, each the
    candidate farthest (Euclidean) from the labeled points and the earlier picks."""
    candidate_features = np.asarray(candidate_features, dtype=np.float64)
    labeled_features = np.asarray(labeled_features, dtype=np.float64)
    if not 0 < budget <= len(candidate_features):
        raise ValueError(f"budget {budget} must be in 1..{len(candidate_features)} (the unlabeled pool)")
    nearest = np.concatenate([_squared_distances(candidate_features[start:start + chunk], labeled_features).min(1)
                              for start in range(0, len(candidate_features), chunk)])
    picks = []
    for _ in range(budget):
        pick = int(np.argmax(nearest))
        picks.append(pick)
        distances = _squared_distances(candidate_features, candidate_features[pick:pick + 1])[:, 0]
        nearest = np.minimum(nearest, distances)
    return np.asarray(picks, dtype=np.int64)


# TypiClust's settings (Hacohen et al., 2022): neighbours in the typicality, the largest number of clusters,
# and clusters at most this small are never queried (they are outliers, not modes of the pool).
TYPICALITY_NEIGHBOURS = 20
MAX_CLUSTERS = 500
MIN_CLUSTER_SIZE = 5


def kmeans(points, clusters, seed, iterations=50, chunk=8192):
    """Lloyd's k-means from a seeded greedy k-means++ start (the best of 2 + ln k draws per center, as
    scikit-learn does): (cluster of each point, int64; centers).

    Deterministic for a given seed; an empty cluster takes the point farthest from its center.
    """
    points = np.asarray(points, dtype=np.float64)
    if not 0 < clusters <= len(points):
        raise ValueError(f"{clusters} clusters must be in 1..{len(points)} (the points)")
    rng = np.random.default_rng(seed)
    centers = np.empty((clusters, points.shape[1]))
    centers[0] = points[rng.integers(len(points))]
    nearest = _squared_distances(points, centers[:1])[:, 0]
    trials = 2 + int(np.log(clusters))
    for index in range(1, clusters):
        total = nearest.sum()
        if total > 0:
            candidates = rng.choice(len(points), size=trials, p=nearest / total)
        else:
            candidates = rng.integers(len(points), size=trials)
        reduced = np.minimum(nearest[:, None], _squared_distances(points, points[candidates]))
        best = int(reduced.sum(0).argmin())
        centers[index], nearest = points[candidates[best]], reduced[:, best]
    assignment = None
    for _ in range(iterations):
        distances = np.concatenate([_squared_distances(points[start:start + chunk], centers)
                                    for start in range(0, len(points), chunk)])
        new_assignment = distances.argmin(1)
        if assignment is not None and np.array_equal(new_assignment, assignment):
            break
        assignment = new_assignment
        own_distances = distances[np.arange(len(points)), assignment]
        for empty in np.flatnonzero(np.bincount(assignment, minlength=clusters) == 0):
            farthest = int(own_distances.argmax())
            own_distances[farthest] = -1.0
            assignment[farthest] = empty
        order = np.argsort(assignment, kind="stable")
        counts = np.bincount(assignment, minlength=clusters)
        filled = np.flatnonzero(counts)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[filled]
        centers[filled] = np.add.reduceat(points[order], starts, axis=0) / counts[filled, None]
    return assignment.astype(np.int64), centers


def typicality(points, neighbours=TYPICALITY_NEIGHBOURS, chunk=2048):
    """TypiClust's typicality of each point: 1 / mean Euclidean distance to its `neighbours` nearest
    other points (fewer where there are fewer); 0 for a lone point."""
    points = np.asarray(points, dtype=np.float64)
    neighbours = min(neighbours, len(points) - 1)
    if neighbours < 1:
        return np.zeros(len(points))
    mean_distances = []
    for start in range(0, len(points), chunk):
        distances = np.sqrt(_squared_distances(points[start:start + chunk], points))
        rows = np.arange(distances.shape[0])
        distances[rows, start + rows] = np.inf
        mean_distances.append(np.partition(distances, neighbours - 1, axis=1)[:, :neighbours].mean(1))
    return 1.0 / np.maximum(np.concatenate(mean_distances), 1e-12)


def typiclust(features, labeled_positions, budget, seed):
    """TypiClust (Hacohen et al., 2022): positions (into `features`) of `budget` unlabeled points.

    The points fall into min(|L| + budget, MAX_CLUSTERS) k-means clusters (Euclidean). Each pick
    comes from the cluster with the fewest labeled or picked points, the largest first among equals
    (clusters of at most MIN_CLUSTER_SIZE points only when no other is left), and is that cluster's
    most typical point not yet labeled. Ties go to the smaller position.
    """
    features = np.asarray(features, dtype=np.float64)
    labeled = np.zeros(len(features), dtype=bool)
    labeled[np.asarray(labeled_positions, dtype=np.int64)] = True
    if not 0 < budget <= int((~labeled).sum()):
        raise ValueError(f"budget {budget} must be in 1..{int((~labeled).sum())} (the unlabeled pool)")
    clusters = min(int(labeled.sum()) + budget, MAX_CLUSTERS, len(features))
    assignment, _ = kmeans(features, clusters, seed)
    sizes = np.bincount(assignment, minlength=clusters)
    covered = np.bincount(assignment[labeled], minlength=clusters)
    typical = {}
    picks = []
    for _ in range(budget):
        open_clusters = np.flatnonzero(np.bincount(assignment[~labeled], minlength=clusters) > 0)
        order = np.lexsort((open_clusters, -sizes[open_clusters], covered[open_clusters],
                            sizes[open_clusters] <= MIN_CLUSTER_SIZE))
        cluster = int(open_clusters[order[0]])
        members = np.flatnonzero(assignment == cluster)
        if cluster not in typical:
            typical[cluster] = typicality(features[members])
        free = ~labeled[members]
        best = members[free][np.lexsort((members[free], -typical[cluster][free]))[0]]
        picks.append(int(best))
        labeled[best] = True
        covered[cluster] += 1
    return np.asarray(picks, dtype=np.int64)


def initial_selection(features, count, seed):
    """The label-blind initial set: `count` pool positions by TypiClust with nothing labeled yet."""
    return typiclust(features, np.zeros(0, dtype=np.int64), count, [seed, INITIAL_STREAM])


def pixel_points(images, seed, chunk=4096):
    """Flattened images as float64 points in [-1, 1]; images of more than MAX_PIXELS values are projected
    at random (a seeded Gaussian, which keeps distances as Johnson-Lindenstrauss allows) to MAX_PIXELS."""
    flat = np.asarray(images).reshape(len(images), -1)

    def scaled(start):
        return flat[start:start + chunk].astype(np.float64) / 127.5 - 1.0

    if flat.shape[1] <= MAX_PIXELS:
        return np.concatenate([scaled(start) for start in range(0, len(flat), chunk)])
    projection = np.random.default_rng([seed, INITIAL_STREAM]).standard_normal(
        (flat.shape[1], MAX_PIXELS)) / np.sqrt(MAX_PIXELS)
    return np.concatenate([scaled(start) @ projection for start in range(0, len(flat), chunk)])


def pixel_initial_selection(images, count, seed):
    """The label-blind initial set on the pool's own pixels (`--initial_selection=typiclust`): TypiClust
    on `pixel_points`; no model is needed."""
    return initial_selection(pixel_points(images, seed), count, seed)


def lowest_in_clusters(scores, codes, budget, seed):
    """Positions of `budget` candidates: the lowest score in each of `budget` k-means clusters of their
    codes, so that queries spread over the pool instead of piling into one mode. Ordered by score
    (ties to the smaller position)."""
    scores = np.asarray(scores, dtype=np.float64)
    assignment, _ = kmeans(codes, budget, seed)
    order = np.lexsort((np.arange(len(scores)), scores))
    first_in_cluster = np.unique(assignment[order], return_index=True)[1]
    picks = order[np.sort(first_in_cluster)]
    return picks.astype(np.int64)


def random_selection(candidate_indices, budget, seed, cycle):
    """`budget` candidates drawn uniformly without replacement from the seed's own stream for this cycle."""
    rng = np.random.default_rng([seed, cycle, RANDOM_STREAM])
    return np.asarray(rng.choice(np.asarray(candidate_indices, dtype=np.int64), budget, replace=False), np.int64)


@dataclasses.dataclass(frozen=True)
class Request:
    """One acquisition round: `budget` queries among the unlabeled images of `images` after `cycle`."""

    learner: object
    images: np.ndarray
    labeled_indices: np.ndarray
    budget: int
    cycle: int
    batch_size: int
    seed: int
    strategy: object = None
    verbose: bool = False

    @property
    def candidates(self):
        return unlabeled_indices(len(self.images), self.labeled_indices)

    def pool_outputs(self, function, indices, verbose=None):
        """`function` (uint8 images -> tensor) over `images[indices]`, batch by batch through the strategy."""
        return predict_in_batches(function, self.images, self.batch_size, indices=np.asarray(indices, np.int64),
                                  verbose=self.verbose if verbose is None else verbose, unit_name="pool image",
                                  strategy=self.strategy)


class Heuristic:
    """An acquisition function: `scores` of the unlabeled images, queried lowest first (or highest first).

    `reads` names the keys of the learner's `acquisition_outputs` the scores are computed from.
    """

    reads = ("score",)
    highest_first = False

    @classmethod
    def from_options(cls, mc_passes):  # pylint: disable=unused-argument
        """The heuristic with the run's options (only those it uses)."""
        return cls()

    def supports(self, learner):
        """Whether `learner` gives what this heuristic reads."""
        return set(self.reads) <= set(learner.acquisition_keys)

    def outputs(self, learner, images):
        """What `scores` reads, for one batch of uint8 images (a tensor)."""
        return learner.acquisition_outputs(images)[self.reads[0]]

    def scores(self, outputs):
        """One score per image from the gathered `outputs`."""
        return outputs

    def select(self, request):
        """Pool indices to label next: `request.budget` unlabeled ones, in the order of their scores."""
        candidates = request.candidates
        scores = self.scores(request.pool_outputs(lambda batch: self.outputs(request.learner, batch), candidates))
        choose = select_highest if self.highest_first else select_lowest
        return choose(scores, candidates, request.budget)


class LowestScore(Heuristic):
    """ARAL's and VAAL's query (Alg. 1, line 2): the lowest S(E(x, C(x))), the images S takes for unlabeled."""


class ClassBalanced(Heuristic):
    """The lowest scores taken round by round over C's predicted classes (our option, not the paper's)."""

    reads = ("score", "logits")

    def outputs(self, learner, images):
        outputs = learner.acquisition_outputs(images)
        score = outputs["score"]
        return tf.stack([score, tf.cast(tf.argmax(outputs["logits"], axis=-1), score.dtype)], axis=-1)

    def select(self, request):
        candidates = request.candidates
        outputs = request.pool_outputs(lambda batch: self.outputs(request.learner, batch), candidates)
        return select_lowest_per_class(outputs[:, 0], outputs[:, 1].astype(np.int64), candidates, request.budget)


class Uniform(Heuristic):
    """Uniform selection from the seed's own stream for each cycle."""

    reads = ()

    def select(self, request):
        return random_selection(request.candidates, request.budget, request.seed, request.cycle)


class MaxEntropy(Heuristic):
    """The highest entropy of the classifier's prediction."""

    reads = ("logits",)
    highest_first = True

    def outputs(self, learner, images):
        return tf.nn.softmax(super().outputs(learner, images))

    def scores(self, outputs):
        return entropy(outputs)


class BALD(Heuristic):
    """The highest mutual information between prediction and weights under MC dropout (Houlsby et al.)."""

    reads = ()
    highest_first = True

    def __init__(self, passes=10):
        self.passes = passes

    @classmethod
    def from_options(cls, mc_passes):
        return cls(mc_passes)

    def supports(self, learner):
        return hasattr(learner, "mc_probabilities")

    def outputs(self, learner, images):
        return learner.mc_probabilities(images, self.passes)

    def scores(self, outputs):
        return mutual_information(outputs)


class CoreSet(Heuristic):
    """Sener & Savarese's k-center greedy core-set on the classifier's penultimate features."""

    reads = ("features",)

    def select(self, request):
        candidates = request.candidates
        features = request.pool_outputs(lambda batch: self.outputs(request.learner, batch), candidates)
        labeled = request.pool_outputs(lambda batch: self.outputs(request.learner, batch), request.labeled_indices,
                                       verbose=False)
        return candidates[k_center_greedy(features, labeled, request.budget)]


class TypiClust(Heuristic):
    """TypiClust on the learner's features: the most typical point of each uncovered cluster."""

    reads = ("features",)

    def select(self, request):
        features = request.pool_outputs(lambda batch: self.outputs(request.learner, batch),
                                        np.arange(len(request.images)))
        labeled = np.asarray(request.labeled_indices, dtype=np.int64)
        return typiclust(features, labeled, request.budget, [request.seed, request.cycle, CLUSTER_STREAM])


class LowestInClusters(Heuristic):
    """ARAL's S with diversity: the lowest S in each of `budget` k-means clusters of E's codes."""

    reads = ("score", "latent")

    def outputs(self, learner, images):
        outputs = learner.acquisition_outputs(images)
        return tf.concat([outputs["score"][:, None], outputs["latent"]], axis=-1)

    def select(self, request):
        candidates = request.candidates
        outputs = request.pool_outputs(lambda batch: self.outputs(request.learner, batch), candidates)
        picks = lowest_in_clusters(outputs[:, 0], outputs[:, 1:], request.budget,
                                   [request.seed, request.cycle, CLUSTER_STREAM])
        return candidates[picks]


HEURISTICS = {
    "lowest": LowestScore,
    "class_balanced": ClassBalanced,
    "random": Uniform,
    "entropy": MaxEntropy,
    "bald": BALD,
    "coreset": CoreSet,
    "typiclust": TypiClust,
    "lowest_in_clusters": LowestInClusters,
}


def make_heuristic(name, mc_passes=10):
    """The heuristic registered as `name`; ValueError naming the known ones otherwise."""
    if name not in HEURISTICS:
        raise ValueError(f"unknown selection {name!r}; choose one of {', '.join(HEURISTICS)}")
    return HEURISTICS[name].from_options(mc_passes=mc_passes)
