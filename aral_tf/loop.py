"""The active learning loop of Alg. 1 with a simulated oracle, and its results files.

Output directory layout:
    results.jsonl            one JSON line per trained cycle
    cycle_K/labeled.npy      pool indices labeled while training cycle K (int64)
    cycle_K/selected.npy     pool indices queried after cycle K (int64; not after the last)
Every file is written atomically (temporary file, then rename).
"""

import dataclasses
import io
import json
import os
import tempfile
import time

import numpy as np

from aral_tf.acquisition import select_queries
from aral_tf.training import BatchStream, Trainer, predict_in_batches


# Pool images (no labels) for the data-dependent initialisation of D, and the seed stream they are drawn with.
INIT_SAMPLE_SIZE = 500
INIT_SAMPLE_STREAM = 1_000_003


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """The schedule of an active learning run."""

    budget: int
    cycles: int
    train_steps: int
    batch_size: int
    seed: int
    output_dir: str
    eval_batch_size: int = 500
    verbose: bool = True
    jit_compile: bool = False


class SimulatedOracle:
    """Answers queries with the ground truth; the pool's labels are read nowhere else."""

    def __init__(self, labels):
        self._labels = np.asarray(labels, dtype=np.int64)
        self.queried = 0

    def label(self, indices):
        """True labels of the pool indices `indices`."""
        self.queried += len(indices)
        return self._labels[np.asarray(indices, dtype=np.int64)]


def write_atomic(path, payload):
    """Writes bytes to `path` through a temporary file in the same directory and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def save_indices(path, indices):
    """Saves pool indices as an int64 .npy file, atomically."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(indices, dtype=np.int64), allow_pickle=False)
    write_atomic(path, buffer.getvalue())


def append_result(path, record):
    """Appends one JSON line to `path`, rewriting the file atomically."""
    previous = b""
    if os.path.exists(path):
        with open(path, "rb") as stream:
            previous = stream.read()
    write_atomic(path, previous + (json.dumps(record, sort_keys=True) + "\n").encode())


def evaluate(model, images, labels, batch_size, strategy=None):
    """Test accuracy of the classifier C."""
    logits = predict_in_batches(model.classify, images, batch_size, strategy=strategy)
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def run_active_learning(model, strategy, data, initial_indices, oracle, config, log=print, callbacks=None):
    """Alg. 1: trains, evaluates, queries and labels for `config.cycles` rounds.

    Before the first cycle, D's weight-normalised layers are initialised from
    500 pool images drawn with the seed (images only; no labels are read).
    The model is trained and evaluated `cycles + 1` times, warm-started across
    cycles. Returns the list of per-cycle records written to results.jsonl.
    `callbacks` (e.g. `summaries.TensorBoardLogger`) hears `on_train_step(step,
    losses)` with the step counted across cycles and `on_cycle_end(cycle,
    record, model)`.
    """
    labeled = np.sort(np.asarray(initial_indices, dtype=np.int64))
    labels = oracle.label(labeled)
    sample = np.random.default_rng([config.seed, INIT_SAMPLE_STREAM]).permutation(len(data.x_train))
    model.initialize_from_data(data.x_train[np.sort(sample[:INIT_SAMPLE_SIZE])])
    trainer = Trainer(model, strategy, jit_compile=config.jit_compile)
    results_path = os.path.join(config.output_dir, "results.jsonl")
    records = []
    for cycle in range(config.cycles + 1):
        started = time.time()
        num_labeled = len(labeled)
        cycle_dir = os.path.join(config.output_dir, f"cycle_{cycle}")
        save_indices(os.path.join(cycle_dir, "labeled.npy"), labeled)
        log(f"cycle {cycle}/{config.cycles}: training on {len(labeled)} labels for {config.train_steps} steps")
        stream = BatchStream(data.x_train, labels, labeled, config.batch_size,
                             model.network_config.latent_dim, data.num_classes, seed=[config.seed, cycle])
        train_started = time.time()
        on_step = None
        if callbacks:
            def on_step(step, losses, steps_before=cycle * config.train_steps):
                callbacks.on_train_step(steps_before + step, losses)
        mean_losses = trainer.train(stream, config.train_steps, verbose=config.verbose, on_step=on_step)
        train_seconds = time.time() - train_started
        with model.averaged_discriminator():
            accuracy = evaluate(model, data.x_test, data.y_test, config.eval_batch_size, strategy)
            log(f"cycle {cycle}: test accuracy {accuracy:.4f} with {num_labeled} labels")
            if cycle < config.cycles:
                selected = select_queries(model, data.x_train, labeled, config.budget,
                                          config.eval_batch_size, verbose=config.verbose, strategy=strategy)
        if cycle < config.cycles:
            save_indices(os.path.join(cycle_dir, "selected.npy"), selected)
            order = np.argsort(np.concatenate([labeled, selected]), kind="stable")
            labels = np.concatenate([labels, oracle.label(selected)])[order]
            labeled = np.concatenate([labeled, selected])[order]
        record = {
            "cycle": cycle,
            "num_labeled": num_labeled,
            "test_accuracy": accuracy,
            "seconds": round(time.time() - started, 3),
            "train_steps": config.train_steps,
            "train_seconds": round(train_seconds, 3),
            "train_images_per_second": round(3 * config.batch_size * config.train_steps / train_seconds, 1),
            "losses": {name: round(value, 6) for name, value in mean_losses.items()},
        }
        append_result(results_path, record)
        records.append(record)
        if callbacks:
            callbacks.on_cycle_end(cycle, record, model)
    return records
