"""Distribution strategies, the training input pipeline, the distributed train loop and batched inference."""

import collections
import dataclasses
import json
import os
import socket
import urllib.parse

import numpy as np
import keras
import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")
TPU_CONNECT_TIMEOUT_SECONDS = 10


class StrategyError(ValueError):
    """A strategy that cannot be built here (no TPU at the address, malformed TF_CONFIG, ...)."""


def resolve_strategy_name(name, num_gpus):
    """`auto` becomes `mirrored` when several GPUs are visible, else `default`; other names are kept."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if name == "auto":
        return "mirrored" if num_gpus > 1 else "default"
    return name


def make_strategy(name="default", tpu=None):
    """A `tf.distribute` strategy by name (see `STRATEGIES`).

    `default` runs on one device, `mirrored` on all local GPUs (or CPUs),
    `multi_worker` on every worker of the TF_CONFIG cluster (one worker on
    the local devices without TF_CONFIG), `tpu` on the TPU at `tpu` (an
    address, a Cloud TPU name, or `local` on a TPU VM). Build the strategy
    before any other TensorFlow work: multi-worker collectives must be
    configured at program start-up.
    """
    name = resolve_strategy_name(name, len(tf.config.list_physical_devices("GPU")))
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        _check_tf_config(os.environ.get("TF_CONFIG"))
        return tf.distribute.MultiWorkerMirroredStrategy()
    return _tpu_strategy(tpu)


def _check_tf_config(text):
    """Rejects a TF_CONFIG that TensorFlow would misread (absent is fine: one local worker)."""
    if not text:
        return
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise StrategyError(f"TF_CONFIG is not JSON ({error})") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) \
            or not isinstance(config.get("task"), dict):
        raise StrategyError('TF_CONFIG needs {"cluster": {...}, "task": {"type": ..., "index": ...}}')
    task = config["task"]
    members = config["cluster"].get(task.get("type"))
    if not isinstance(members, list) or not isinstance(task.get("index"), int) \
            or not 0 <= task["index"] < len(members):
        raise StrategyError(f"TF_CONFIG task {task} is not in its cluster {config['cluster']}")


def _tpu_strategy(address):
    if not address:
        raise StrategyError("no TPU address given (a grpc:// address, a Cloud TPU name, or local)")
    parsed = urllib.parse.urlparse(address)
    if parsed.scheme == "grpc":
        # Connecting to a gRPC address where nothing listens blocks for minutes; probe it first.
        try:
            if not parsed.hostname or parsed.port is None:
                raise ValueError("expected grpc://host:port")
            socket.create_connection((parsed.hostname, parsed.port), TPU_CONNECT_TIMEOUT_SECONDS).close()
        except (OSError, ValueError) as error:
            raise StrategyError(f"cannot reach a TPU there ({error})") from None
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except Exception as error:  # pylint: disable=broad-except
        # The resolver fails in many ways (name lookup, cloud API, no TPU kernels); each means "no TPU here".
        raise StrategyError(f"no TPU found ({_first_line(error)})") from None


def _first_line(error, limit=120):
    """The first line of an exception's message, shortened to `limit` characters, for one-line errors."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= limit else text[:limit - 3] + "..."


def is_chief(strategy):
    """Whether this process writes results: the `chief` task, else worker 0; any single-process run."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    resolver = strategy.cluster_resolver
    if resolver.task_type in (None, "chief"):
        return True
    return (resolver.task_type == "worker" and resolver.task_id == 0
            and "chief" not in resolver.cluster_spec().as_dict())


def same_on_every_worker(strategy, values):
    """Whether every worker of a multi-worker `strategy` passes the same integers `values` (a collective op).

    Always true for a single-process strategy.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    local = tf.constant([values], tf.int64)
    gathered = strategy.gather(strategy.experimental_distribute_values_from_function(lambda _: local), axis=0)
    gathered = gathered.numpy()
    return bool(np.all(gathered == gathered[:1]))


def split_across_replicas(strategy, batch):
    """Distributes a global batch (an array or a dict of arrays): replica r gets the r-th equal slice.

    Every worker of a multi-worker strategy passes the same global batch and
    keeps the slices of its own replicas, so the split is the same as on one
    machine with as many devices.
    """
    replicas = strategy.num_replicas_in_sync
    size = len(next(iter(batch.values())) if isinstance(batch, dict) else batch)
    if size % replicas:
        raise ValueError(f"batch size {size} is not divisible by the {replicas} replicas")
    if replicas == 1:
        return batch
    share = size // replicas

    def replica_slice(context):
        start = context.replica_id_in_sync_group * share
        return tf.nest.map_structure(lambda value: value[start:start + share], batch)

    return strategy.experimental_distribute_values_from_function(replica_slice)


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


@dataclasses.dataclass(frozen=True)
class TrainedStep:
    """What `Trainer.train` tells its `after_step` hook about a finished step (counted from 1).

    `loss_sums` are the sums of each loss over steps 1..step; `stream_state` is
    the stream's `rng_state` right after this step's batch, from which a
    resumed run draws the next step's batch.
    """

    step: int
    losses: dict
    loss_sums: dict
    stream_state: dict


class Trainer:
    """Runs `model.train_step` under `strategy`, one global batch per step.

    Keras `fit()` is not used: it fails under MultiWorkerMirroredStrategy
    (keras-team/keras#20585), while `strategy.run(model.train_step)` works under
    every strategy. A global batch is split evenly across replicas; the losses
    already average over the global batch, so replica values are summed.
    `jit_compile` compiles the step with XLA; it needs a single replica, since
    XLA cannot compile a step that synchronises replicas (keras-team/keras#19005).
    """

    def __init__(self, model, strategy, jit_compile=False):
        if jit_compile and strategy.num_replicas_in_sync > 1:
            raise ValueError(f"XLA cannot compile a step across {strategy.num_replicas_in_sync} replicas")
        self.model = model
        self.strategy = strategy
        self._replica_step = model.train_step
        if jit_compile:
            self._replica_step = tf.function(model.train_step, jit_compile=True)
        self._step = tf.function(self._distributed_step)

    def _distributed_step(self, batch):
        per_replica = self.strategy.run(self._replica_step, args=(batch,))
        return {name: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                for name, value in per_replica.items()}

    def train_step(self, batch):
        """One distributed step on a global batch (arrays or tensors); returns the losses as floats."""
        return {name: float(value)
                for name, value in self._step(split_across_replicas(self.strategy, batch)).items()}

    def train(self, stream, steps, verbose=True, first_step=0, loss_sums=None, after_step=None):
        """Steps `first_step + 1 .. steps` on batches from `stream`; returns each loss's mean over steps 1..steps.

        Batches come through `input_pipeline`, drawn ahead of the step that uses them. `loss_sums` holds
        the sums of the losses over steps 1..first_step (empty when starting at 0) and is updated in
        place. `after_step(TrainedStep)` runs after each step whose losses are all finite (e.g. to
        checkpoint or log); a non-finite loss raises FloatingPointError before it.
        """
        loss_sums = {} if loss_sums is None else loss_sums
        progress = keras.utils.Progbar(steps, verbose=1 if verbose else 0, unit_name="step")
        if first_step:
            progress.update(first_step)
        stream_states = collections.deque()
        batches = input_pipeline(stream, steps - first_step, stream_states) if first_step < steps else ()
        for step, batch in enumerate(batches, start=first_step + 1):
            stream_state = stream_states.popleft()
            values = self.train_step(batch)
            for name, value in values.items():
                if not np.isfinite(value):
                    raise FloatingPointError(f"{name} is {value} at step {step}; training diverged")
            for name, value in values.items():
                loss_sums[name] = loss_sums.get(name, 0.0) + value
            if after_step is not None:
                after_step(TrainedStep(step, values, loss_sums, stream_state))
            progress.update(step, [(name, value) for name, value in values.items() if name.startswith("loss_")])
        return {name: total / steps for name, total in loss_sums.items()}


class BatchPredictor:
    """Applies a per-replica `function` to batches of up to `batch_size` images through `strategy`.

    Each batch is padded (repeating its last image) to one fixed size, a
    multiple of the replica count, so the function is traced once; it is split
    across the replicas, and the first output of `function` is gathered back in
    order on every worker, without the padding.
    """

    def __init__(self, function, batch_size, strategy=None):
        self.strategy = strategy or tf.distribute.get_strategy()
        replicas = self.strategy.num_replicas_in_sync
        self.padded_size = -(-batch_size // replicas) * replicas
        self._function = function
        self._step = tf.function(self._distributed_step)

    def _distributed_step(self, images):
        outputs = self.strategy.run(self._function, args=(images,))
        first = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
        return self.strategy.gather(first, axis=0)

    def __call__(self, images):
        count = len(images)
        if not 0 < count <= self.padded_size:
            raise ValueError(f"a batch of {count} images; expected 1 to {self.padded_size}")
        if count < self.padded_size:
            images = np.concatenate([images, np.repeat(images[-1:], self.padded_size - count, axis=0)])
        return self._step(split_across_replicas(self.strategy, images)).numpy()[:count]


def predict_in_batches(function, images, batch_size, indices=None, verbose=False, unit_name="image",
                       strategy=None):
    """Applies `function` to `images[indices]` batch by batch through `strategy`; keeps the first output.

    Only one batch of images is gathered at a time and only the outputs are
    kept, so memory stays flat as the pool grows. Results are aligned with
    `indices` (all images when None).
    """
    indices = np.arange(len(images)) if indices is None else np.asarray(indices)
    if not len(indices):
        raise ValueError("no images to predict")
    predictor = BatchPredictor(function, batch_size, strategy)
    outputs = None
    progress = keras.utils.Progbar(len(indices), verbose=1 if verbose else 0, unit_name=unit_name)
    for start in range(0, len(indices), batch_size):
        result = predictor(images[indices[start:start + batch_size]])
        if outputs is None:
            outputs = np.empty((len(indices),) + result.shape[1:], result.dtype)
        outputs[start:start + len(result)] = result
        progress.update(min(start + batch_size, len(indices)))
    return outputs
