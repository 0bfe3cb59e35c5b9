"""Active learning methods by name: each is a learner (`learner.Learner`) and a heuristic (`heuristics`).

`build_method(name, ...)` is the registry (`METHODS` lists the names); unknown names raise
ValueError. A method's `select` sees pool images and which indices are labeled, never pool labels,
and returns unlabeled pool indices only.
"""

import dataclasses

from aral_tf import baselines
from aral_tf.heuristics import Request, make_heuristic
from aral_tf.model import ARALModel
from aral_tf.pipeline import BatchStream, LabeledBatches
from aral_tf.training import Trainer


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """What a method name stands for: its learner (a key of LEARNERS) and heuristic (None: no queries)."""

    description: str
    learner: str
    heuristic: str = None


# Learner constructors by name: (network_config, loss_weights, optimizer_config) -> learner.
LEARNERS = {
    "aral": ARALModel,
    "supervised": lambda network, _, optimizer: baselines.SupervisedClassifier(network, optimizer),
    "vaal": baselines.VAALWithClassifier,
    "gan": baselines.SemiSupervisedGAN,
    "vaal_with_gan": baselines.VAALWithGANClassifier,
}

METHODS = {
    "aral": MethodSpec("ARAL: the co-trained model, lowest S(E(x, C(x)))", "aral", "lowest"),
    "vaal": MethodSpec("VAAL's beta-VAE and latent discriminator; classifier trained on labeled images only",
                       "vaal", "lowest"),
    "random": MethodSpec("uniform selection (seeded); classifier trained on labeled images only", "supervised",
                         "random"),
    "entropy": MethodSpec("maximum entropy of the supervised classifier's prediction", "supervised", "entropy"),
    "bald": MethodSpec("BALD: maximum mutual information under MC dropout (--mc_passes passes)", "supervised",
                       "bald"),
    "coreset": MethodSpec("k-center greedy on the supervised classifier's penultimate features (Sener & Savarese)",
                          "supervised", "coreset"),
    "full": MethodSpec("the supervised classifier trained once on every pool label (upper bound)", "supervised"),
    "aral_random": MethodSpec("ablation: ARAL's training, uniform selection", "aral", "random"),
    "aral_no_encoder": MethodSpec("ablation: G and D only (no E, no S), BALD selection on D's classifier", "gan",
                                  "bald"),
    "aral_no_cotrain": MethodSpec("ablation: VAAL's acquisition; classifier on labeled images and a separate "
                                  "conditional GAN's images", "vaal_with_gan", "lowest"),
}
FULL = "full"
# Methods whose learner is an ARALModel (saved as model.keras and exported at the end of a run).
ARAL_TRAINED_METHODS = tuple(name for name, spec in METHODS.items() if spec.learner == "aral")


class Method:
    """A learner with its training stream, trainer and heuristic, as `loop.run_active_learning` drives it."""

    def __init__(self, name, learner, heuristic, strategy, seed, jit_compile=False):
        self.name = name
        self.learner = learner
        self.heuristic = heuristic
        self.strategy = strategy
        self.seed = seed
        self.trainer = Trainer(learner, strategy, jit_compile=jit_compile)

    @property
    def aral_model(self):
        """The ARALModel of ARAL-trained methods (saved and exported at the end of a run), else None."""
        return self.learner if isinstance(self.learner, ARALModel) else None

    @property
    def streams_per_step(self):
        """Image streams of `batch_size` images one training step processes."""
        return self.learner.streams

    def initialize_from_data(self, images):
        """Data-dependent initialisation of the classifier's weight-normalised layers (pool images, no labels)."""
        self.learner.initialize_from_data(images)

    def restart(self, networks):
        """Puts `networks` (ARAL's names) back to their start-of-run weights (`Learner.restart`)."""
        self.learner.restart(networks)

    def evaluation(self):
        """Context for evaluation and acquisition: the classifier holds its averaged weights."""
        return self.learner.averaged()

    def classify(self, images):
        return self.learner.classify(images)

    def stream(self, images, labels, labeled_indices, batch_size, seed):
        """The seeded training batches of this learner; `labels` are those of `labeled_indices` only."""
        if self.learner.labeled_only:
            return LabeledBatches(images, labels, labeled_indices, batch_size, seed)
        config = self.learner.network_config
        return BatchStream(images, labels, labeled_indices, batch_size, config.latent_dim, config.num_classes,
                           seed=seed)

    def train(self, images, labels, labeled_indices, steps, batch_size, seed, verbose=False):
        """`steps` training steps on batches drawn with `seed`; returns the mean losses."""
        stream = self.stream(images, labels, labeled_indices, batch_size, seed)
        return self.trainer.train(stream, steps, verbose=verbose)

    def select(self, images, labeled_indices, budget, cycle, batch_size, verbose=False):
        """Pool indices to label next: `budget` unlabeled ones chosen by the heuristic."""
        if self.heuristic is None:
            raise ValueError(f"method {self.name} does not select")
        return self.heuristic.select(Request(self.learner, images, labeled_indices, budget, cycle, batch_size,
                                             self.seed, self.strategy, verbose))


def build_learner(name, network_config, loss_weights, optimizer_config, strategy):
    """The learner registered as `name` in LEARNERS, built under `strategy`."""
    with strategy.scope():
        return LEARNERS[name](network_config, loss_weights, optimizer_config)


def build_method(name, network_config, loss_weights, optimizer_config, strategy, seed, mc_passes=10,
                 jit_compile=False, selection=None):
    """The method called `name` with fresh networks built under `strategy`; ValueError for unknown names.

    `selection` replaces the method's own heuristic by another of `heuristics.HEURISTICS` that reads
    what the learner gives. `jit_compile` compiles the training step with XLA (`training.Trainer`).
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    spec = METHODS[name]
    heuristic_name = selection or spec.heuristic
    heuristic = None if heuristic_name is None else make_heuristic(heuristic_name, mc_passes=mc_passes)
    learner = build_learner(spec.learner, network_config, loss_weights, optimizer_config, strategy)
    if heuristic is not None and not heuristic.supports(learner):
        raise ValueError(f"selection {heuristic_name!r} reads {', '.join(heuristic.reads)}, which the learner of "
                         f"{name!r} does not give (it gives {', '.join(learner.acquisition_keys)})")
    return Method(name, learner, heuristic, strategy, seed, jit_compile=jit_compile)
