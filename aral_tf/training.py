"""Distribution strategies, the training input stream and the distributed train loop."""

import numpy as np
import keras
import tensorflow as tf

STRATEGIES = ("default", "mirrored")


def make_strategy(name="default"):
    """A `tf.distribute` strategy by name: `default` (one device) or `mirrored` (all local devices)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


class SeededStream:
    """A stream of training batches drawn with the NumPy generator `self._rng`, whose state can be saved."""

    @property
    def rng_state(self):
        """The generator's state as a JSON-compatible dict (saved with checkpoints to resume the stream)."""
        return self._rng.bit_generator.state

    @rng_state.setter
    def rng_state(self, state):
        self._rng.bit_generator.state = state


class BatchStream(SeededStream):
    """Global training batches for Alg. 1 lines 8-9, drawn with a seeded NumPy generator.

    Labeled examples are drawn with replacement from the labeled indices (the
    labeled set may be smaller than a batch), unlabeled ones from the rest of
    the pool. Only the labels of labeled indices are ever read. Each batch also
    carries the step's random draws: prior latents z ~ N(0, I), prior labels
    y ~ U{0..K-1} and the encoder's reparameterisation noise.
    """

    def __init__(self, images, labels, labeled_indices, batch_size, latent_dim, num_classes, seed):
        labeled_indices = np.asarray(labeled_indices, dtype=np.int64)
        unlabeled_mask = np.ones(len(images), dtype=bool)
        unlabeled_mask[labeled_indices] = False
        self._images = images
        self._labeled_indices = labeled_indices
        self._labeled_labels = np.asarray(labels, dtype=np.int64)
        self._unlabeled_indices = np.flatnonzero(unlabeled_mask)
        self._batch_size = batch_size
        self._latent_dim = latent_dim
        self._num_classes = num_classes
        self._rng = np.random.default_rng(seed)
        if len(self._labeled_labels) != len(labeled_indices):
            raise ValueError("labels must give one label per labeled index")

    def next(self):
        """The next global batch as a dict of NumPy arrays (the keys of `model.BATCH_KEYS`)."""
        rng, size = self._rng, self._batch_size
        labeled_positions = rng.integers(0, len(self._labeled_indices), size)
        unlabeled = self._unlabeled_indices[rng.integers(0, len(self._unlabeled_indices), size)]
        return {
            "labeled_images": self._images[self._labeled_indices[labeled_positions]],
            "labels": self._labeled_labels[labeled_positions],
            "unlabeled_images": self._images[unlabeled],
            "prior_latent": rng.standard_normal((size, self._latent_dim), dtype=np.float32),
            "prior_labels": rng.integers(0, self._num_classes, size),
            "labeled_noise": rng.standard_normal((size, self._latent_dim), dtype=np.float32),
            "unlabeled_noise": rng.standard_normal((size, self._latent_dim), dtype=np.float32),
        }


class Trainer:
    """Runs `model.train_step` under `strategy`, one global batch per step.

    Keras `fit()` is not used: it fails under MultiWorkerMirroredStrategy
    (keras-team/keras#20585), while `strategy.run(model.train_step)` works under
    every strategy. A global batch is split evenly across replicas; the losses
    already average over the global batch, so replica values are summed.
    """

    def __init__(self, model, strategy):
        self.model = model
        self.strategy = strategy
        self._step = tf.function(self._distributed_step)

    def _distributed_step(self, batch):
        per_replica = self.strategy.run(self.model.train_step, args=(batch,))
        return {name: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                for name, value in per_replica.items()}

    def _distribute(self, batch):
        replicas = self.strategy.num_replicas_in_sync
        size = len(next(iter(batch.values())))
        if size % replicas:
            raise ValueError(f"batch size {size} is not divisible by the {replicas} replicas")
        if replicas == 1:
            return batch
        share = size // replicas

        def replica_slice(context):
            start = context.replica_id_in_sync_group * share
            return {name: value[start:start + share] for name, value in batch.items()}

        return self.strategy.experimental_distribute_values_from_function(replica_slice)

    def train_step(self, batch):
        """One distributed step on a global batch of NumPy arrays; returns the losses as floats."""
        return {name: float(value) for name, value in self._step(self._distribute(batch)).items()}

    def train(self, stream, steps, verbose=True, first_step=0, loss_sums=None, after_step=None):
        """Steps `first_step + 1 .. steps` on batches from `stream`; returns each loss's mean over steps 1..steps.

        `loss_sums` holds the sums of the losses over steps 1..first_step (empty when starting at 0) and is
        updated in place. `after_step(step, loss_sums)` runs after each step whose losses are all finite
        (e.g. to checkpoint); a non-finite loss raises FloatingPointError before it.
        """
        loss_sums = {} if loss_sums is None else loss_sums
        progress = keras.utils.Progbar(steps, verbose=1 if verbose else 0, unit_name="step")
        if first_step:
            progress.update(first_step)
        for step in range(first_step + 1, steps + 1):
            values = self.train_step(stream.next())
            for name, value in values.items():
                if not np.isfinite(value):
                    raise FloatingPointError(f"{name} is {value} at step {step}; training diverged")
            for name, value in values.items():
                loss_sums[name] = loss_sums.get(name, 0.0) + value
            if after_step is not None:
                after_step(step, loss_sums)
            progress.update(step, [(name, value) for name, value in values.items() if name.startswith("loss_")])
        return {name: total / steps for name, total in loss_sums.items()}


def predict_in_batches(function, images, batch_size, indices=None, verbose=False, unit_name="image"):
    """Applies `function` to `images[indices]` batch by batch; keeps the first output of a tuple.

    Only one batch of images is gathered at a time. Results are aligned with
    `indices` (all images when None).
    """
    indices = np.arange(len(images)) if indices is None else np.asarray(indices)
    outputs = []
    progress = keras.utils.Progbar(len(indices), verbose=1 if verbose else 0, unit_name=unit_name)
    for start in range(0, len(indices), batch_size):
        result = function(images[indices[start:start + batch_size]])
        outputs.append(np.asarray(result[0] if isinstance(result, (tuple, list)) else result))
        progress.update(min(start + batch_size, len(indices)))
    return np.concatenate(outputs, axis=0)
