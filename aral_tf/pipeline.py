"""Seeded training batches (every draw of a step comes from one NumPy generator) and the tf.data pipeline over them."""

import numpy as np
import tensorflow as tf


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


class PoolBatches(SeededStream):
    """Label-free batches for `ARALModel.pretrain_step`: `BatchStream`'s keys but "labels", with both
    image streams ("labeled_images" and "unlabeled_images") drawn uniformly from the whole pool."""

    def __init__(self, images, batch_size, latent_dim, num_classes, seed):
        self._images = images
        self._batch_size = batch_size
        self._latent_dim = latent_dim
        self._num_classes = num_classes
        self._rng = np.random.default_rng(seed)

    def next(self):
        rng, size = self._rng, self._batch_size
        return {
            "labeled_images": self._images[rng.integers(0, len(self._images), size)],
            "unlabeled_images": self._images[rng.integers(0, len(self._images), size)],
            "prior_latent": rng.standard_normal((size, self._latent_dim), dtype=np.float32),
            "prior_labels": rng.integers(0, self._num_classes, size),
            "labeled_noise": rng.standard_normal((size, self._latent_dim), dtype=np.float32),
            "unlabeled_noise": rng.standard_normal((size, self._latent_dim), dtype=np.float32),
        }


def input_pipeline(stream, steps, stream_states=None):
    """A `tf.data` pipeline of the next `steps` batches of `stream`, prepared ahead on a background thread.

    Batches come in the stream's order, so a run is the same with or without
    the pipeline; prefetching only overlaps batch preparation with the step.
    The stream runs ahead of the batches taken so far, so its own `rng_state`
    is not where a resumed run should continue; given a deque
    `stream_states`, the state right after each batch is appended to it
    before the batch is passed on (one entry per batch, in order).
    """
    def draw():
        batch = stream.next()
        if stream_states is not None:
            stream_states.append(stream.rng_state)
        return batch

    first = draw()
    signature = {name: tf.TensorSpec(value.shape, tf.as_dtype(value.dtype)) for name, value in first.items()}

    def batches():
        for step in range(steps):
            yield first if step == 0 else draw()

    options = tf.data.Options()
    options.deterministic = True
    return tf.data.Dataset.from_generator(batches, output_signature=signature).with_options(options).prefetch(
        tf.data.AUTOTUNE)



class LabeledBatches(SeededStream):
    """Seeded batches of labeled images only, drawn with replacement (for the supervised learners)."""

    def __init__(self, images, labels, labeled_indices, batch_size, seed):
        self._images = images
        self._labeled_indices = np.asarray(labeled_indices, dtype=np.int64)
        self._labels = np.asarray(labels, dtype=np.int64)
        self._batch_size = batch_size
        self._rng = np.random.default_rng(seed)
        if len(self._labels) != len(self._labeled_indices):
            raise ValueError("labels must give one label per labeled index")

    def next(self):
        positions = self._rng.integers(0, len(self._labeled_indices), self._batch_size)
        return {"labeled_images": self._images[self._labeled_indices[positions]],
                "labels": self._labels[positions]}
