"""Active learning methods by name: a learner, how it trains, and its acquisition function.

`build_method(name, ...)` is the registry (`METHODS` lists the names); unknown names raise
ValueError. A method's `select` sees pool images and which indices are labeled, never pool labels,
and returns unlabeled pool indices only. The acquisition functions are small NumPy functions below,
so that each can be checked on a pool where the right answer is known.
"""

import numpy as np
import tensorflow as tf

from aral_tf import baselines
from aral_tf.acquisition import select_lowest, select_queries, unlabeled_indices
from aral_tf.model import ARALModel
from aral_tf.pipeline import BatchStream, LabeledBatches
from aral_tf.training import Trainer, predict_in_batches

METHODS = {
    "aral": "ARAL: the co-trained model, lowest S(E(x, C(x)))",
    "vaal": "VAAL's beta-VAE and latent discriminator; classifier trained on labeled images only",
    "random": "uniform selection (seeded); classifier trained on labeled images only",
    "entropy": "maximum entropy of the supervised classifier's prediction",
    "bald": "BALD: maximum mutual information under MC dropout (--mc_passes passes)",
    "coreset": "k-center greedy on the supervised classifier's penultimate features (Sener & Savarese)",
    "full": "the supervised classifier trained once on every pool label (upper bound)",
    "aral_random": "ablation: ARAL's training, uniform selection",
    "aral_no_encoder": "ablation: G and D only (no E, no S), BALD selection on D's classifier",
    "aral_no_cotrain": "ablation: VAAL's acquisition; classifier on labeled images and a separate "
                       "conditional GAN's images",
}
FULL = "full"
# Methods whose learner is an ARALModel (saved as model.keras and exported at the end of a run).
ARAL_TRAINED_METHODS = ("aral", "aral_random")

# The seed stream of uniform selection: np.random.default_rng([seed, cycle, RANDOM_STREAM]).
RANDOM_STREAM = 7


def entropy(probabilities):
    """Shannon entropy (nats) of each row of class probabilities."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    return -np.sum(probabilities * np.log(np.clip(probabilities, 1e-12, 1.0)), axis=-1)


def mutual_information(mc_probabilities):
    """BALD's score from [N, passes, classes] MC probabilities: H(mean_t p_t) - mean_t H(p_t)."""
    mc_probabilities = np.asarray(mc_probabilities, dtype=np.float64)
    return entropy(mc_probabilities.mean(axis=1)) - entropy(mc_probabilities).mean(axis=1)


def select_highest(scores, candidate_indices, budget):
    """The `budget` candidates with the highest scores (ties to the smaller pool index)."""
    return select_lowest(-np.asarray(scores, dtype=np.float64), candidate_indices, budget)


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


def random_selection(candidate_indices, budget, seed, cycle):
    """`budget` candidates drawn uniformly without replacement from the seed's own stream for this cycle."""
    rng = np.random.default_rng([seed, cycle, RANDOM_STREAM])
    return np.asarray(rng.choice(np.asarray(candidate_indices, dtype=np.int64), budget, replace=False), np.int64)


class Method:
    """A learner with its training stream and acquisition function, as `loop.run_active_learning` drives it.

    `selection` is one of "aral" or "vaal" (lowest `learner.acquisition_scores`), "random", "entropy",
    "bald", "coreset", or None (no acquisition: `full`).
    """

    def __init__(self, name, learner, selection, strategy, seed, mc_passes=10, labeled_only=False,
                 jit_compile=False, balance_classes=False):
        self.name = name
        self.balance_classes = balance_classes
        self.learner = learner
        self.selection = selection
        self.strategy = strategy
        self.seed = seed
        self.mc_passes = mc_passes
        self.labeled_only = labeled_only
        self.trainer = Trainer(learner, strategy, jit_compile=jit_compile)

    @property
    def aral_model(self):
        """The ARALModel of ARAL-trained methods (saved and exported at the end of a run), else None."""
        return self.learner if isinstance(self.learner, ARALModel) else None

    @property
    def streams_per_step(self):
        """Image streams of `batch_size` images one training step processes."""
        return 3 if self.aral_model is not None else self.learner.streams

    def initialize_from_data(self, images):
        """Data-dependent initialisation of the classifier's weight-normalised layers (pool images, no labels)."""
        self.learner.initialize_from_data(images)

    def restart(self, networks):
        """Puts `networks` (ARAL's names) back to their start-of-run weights: `ARALModel.restart`, or for the
        other learners the networks in the same roles (`baselines.Learner.restart`)."""
        self.learner.restart(networks)

    def evaluation(self):
        """Context for evaluation and acquisition: the classifier holds its averaged weights."""
        if self.aral_model is not None:
            return self.aral_model.averaged_discriminator()
        return self.learner.averaged()

    def classify(self, images):
        return self.learner.classify(images)

    def stream(self, images, labels, labeled_indices, batch_size, seed):
        """The seeded training batches of this learner; `labels` are those of `labeled_indices` only."""
        if self.labeled_only:
            return LabeledBatches(images, labels, labeled_indices, batch_size, seed)
        config = self.learner.network_config
        return BatchStream(images, labels, labeled_indices, batch_size, config.latent_dim, config.num_classes,
                           seed=seed)

    def train(self, images, labels, labeled_indices, steps, batch_size, seed, verbose=False):
        """`steps` training steps on batches drawn with `seed`; returns the mean losses."""
        stream = self.stream(images, labels, labeled_indices, batch_size, seed)
        return self.trainer.train(stream, steps, verbose=verbose)

    def select(self, images, labeled_indices, budget, cycle, batch_size, verbose=False):
        """Pool indices to label next: `budget` unlabeled ones chosen by the acquisition function."""
        if self.selection in ("aral", "vaal"):
            return select_queries(self.learner, images, labeled_indices, budget, batch_size, verbose=verbose,
                                  strategy=self.strategy, balance_classes=self.balance_classes)
        candidates = unlabeled_indices(len(images), labeled_indices)
        if self.selection == "random":
            return random_selection(candidates, budget, self.seed, cycle)
        if self.selection == "entropy":
            probabilities = score_pool_with(lambda batch: tf.nn.softmax(self.learner.classify(batch)), images,
                                            candidates, batch_size, verbose, self.strategy)
            return select_highest(entropy(probabilities), candidates, budget)
        if self.selection == "bald":
            mc_probabilities = score_pool_with(lambda batch: self.learner.mc_probabilities(batch, self.mc_passes),
                                               images, candidates, batch_size, verbose, self.strategy)
            return select_highest(mutual_information(mc_probabilities), candidates, budget)
        if self.selection == "coreset":
            features = score_pool_with(self.learner.features, images, candidates, batch_size, verbose,
                                       self.strategy)
            labeled_features = score_pool_with(self.learner.features, images, labeled_indices, batch_size,
                                               False, self.strategy)
            return candidates[k_center_greedy(features, labeled_features, budget)]
        raise ValueError(f"method {self.name} does not select")


def score_pool_with(function, images, indices, batch_size, verbose=False, strategy=None):
    """`function` (uint8 images -> array) over `images[indices]`, batch by batch through `strategy`,
    aligned with `indices`."""
    return predict_in_batches(function, images, batch_size, indices=np.asarray(indices, dtype=np.int64),
                              verbose=verbose, unit_name="pool image", strategy=strategy)


def build_method(name, network_config, loss_weights, optimizer_config, strategy, seed, mc_passes=10,
                 jit_compile=False, balance_classes=False):
    """The method called `name` with fresh networks built under `strategy`; ValueError for unknown names.

    `jit_compile` compiles the training step with XLA (see `training.Trainer`). `balance_classes`
    takes ARAL's lowest scores round by round over C's predicted classes (`aral` only).
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    if balance_classes and name != "aral":
        raise ValueError(f"class-balanced selection is for the aral method, not {name!r}")
    with strategy.scope():
        if name in ARAL_TRAINED_METHODS:
            learner = ARALModel(network_config, loss_weights, optimizer_config)
            selection = "aral" if name == "aral" else "random"
        elif name in ("random", "entropy", "bald", "coreset", FULL):
            learner = baselines.SupervisedClassifier(network_config, optimizer_config)
            selection = None if name == FULL else name
        elif name == "vaal":
            learner = baselines.VAALWithClassifier(network_config, loss_weights, optimizer_config)
            selection = "vaal"
        elif name == "aral_no_encoder":
            learner = baselines.SemiSupervisedGAN(network_config, loss_weights, optimizer_config)
            selection = "bald"
        else:
            learner = baselines.VAALWithGANClassifier(network_config, loss_weights, optimizer_config)
            selection = "vaal"
    labeled_only = isinstance(learner, baselines.SupervisedClassifier)
    return Method(name, learner, selection, strategy, seed, mc_passes=mc_passes, labeled_only=labeled_only,
                  jit_compile=jit_compile, balance_classes=balance_classes)
