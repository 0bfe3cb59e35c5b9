"""The distributed train loop (`Trainer`) and batched inference over a pool (`predict_in_batches`)."""

import collections
import dataclasses

import numpy as np
import tensorflow as tf

from aral_tf.distribution import split_across_replicas
from aral_tf.pipeline import input_pipeline
from aral_tf.progress import Progress


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
    `step` replaces `model.train_step` (e.g. `ARALModel.pretrain_step`).
    """

    def __init__(self, model, strategy, jit_compile=False, step=None):
        if jit_compile and strategy.num_replicas_in_sync > 1:
            raise ValueError(f"XLA cannot compile a step across {strategy.num_replicas_in_sync} replicas")
        self.model = model
        self.strategy = strategy
        self._replica_step = step or model.train_step
        if jit_compile:
            self._replica_step = tf.function(self._replica_step, jit_compile=True)
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
        progress = Progress(steps, "step", verbose=verbose, start=first_step)
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
    across the replicas, and the output of `function` (one tensor) is gathered
    back in order on every worker, without the padding.
    """

    def __init__(self, function, batch_size, strategy=None):
        self.strategy = strategy or tf.distribute.get_strategy()
        replicas = self.strategy.num_replicas_in_sync
        self.padded_size = -(-batch_size // replicas) * replicas
        self._function = function
        self._step = tf.function(self._distributed_step)

    def _distributed_step(self, images):
        return self.strategy.gather(self.strategy.run(self._function, args=(images,)), axis=0)

    def __call__(self, images):
        count = len(images)
        if not 0 < count <= self.padded_size:
            raise ValueError(f"a batch of {count} images; expected 1 to {self.padded_size}")
        if count < self.padded_size:
            images = np.concatenate([images, np.repeat(images[-1:], self.padded_size - count, axis=0)])
        return self._step(split_across_replicas(self.strategy, images)).numpy()[:count]


def predict_in_batches(function, images, batch_size, indices=None, verbose=False, unit_name="image",
                       strategy=None):
    """Applies `function` (uint8 images -> one tensor) to `images[indices]` batch by batch through `strategy`.

    Only one batch of images is gathered at a time and only the outputs are
    kept, so memory stays flat as the pool grows. Results are aligned with
    `indices` (all images when None).
    """
    indices = np.arange(len(images)) if indices is None else np.asarray(indices)
    if not len(indices):
        raise ValueError("no images to predict")
    predictor = BatchPredictor(function, batch_size, strategy)
    outputs = None
    progress = Progress(len(indices), unit_name, verbose=verbose)
    for start in range(0, len(indices), batch_size):
        result = predictor(images[indices[start:start + batch_size]])
        if outputs is None:
            outputs = np.empty((len(indices),) + result.shape[1:], result.dtype)
        outputs[start:start + len(result)] = result
        progress.update(min(start + batch_size, len(indices)))
    return outputs
