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
import tensorflow as tf

from aral_tf.methods import Method
from aral_tf.training import predict_in_batches


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


def evaluate(model, images, labels, batch_size):
    """Test accuracy of the classifier C (`model.classify`)."""
    classify = tf.function(model.classify, reduce_retracing=True)
    logits = predict_in_batches(classify, images, batch_size)
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def run_active_learning(model, strategy, data, initial_indices, oracle, config, log=print):
    """Alg. 1: trains, evaluates, queries and labels for `config.cycles` rounds.

    `model` is an ARALModel (ARAL itself) or any `methods.Method` (see `methods.build_method`).

    Before the first cycle, D's weight-normalised layers are initialised from
    500 pool images drawn with the seed (images only; no labels are read).
    The model is trained and evaluated `cycles + 1` times, warm-started across
    cycles. Returns the list of per-cycle records written to results.jsonl.
    """
    method = model if isinstance(model, Method) else Method("aral", model, "aral", strategy, config.seed)
    labeled = np.sort(np.asarray(initial_indices, dtype=np.int64))
    labels = oracle.label(labeled)
    sample = np.random.default_rng([config.seed, INIT_SAMPLE_STREAM]).permutation(len(data.x_train))
    method.initialize_from_data(data.x_train[np.sort(sample[:INIT_SAMPLE_SIZE])])
    results_path = os.path.join(config.output_dir, "results.jsonl")
    records = []
    for cycle in range(config.cycles + 1):
        started = time.time()
        num_labeled = len(labeled)
        cycle_dir = os.path.join(config.output_dir, f"cycle_{cycle}")
        save_indices(os.path.join(cycle_dir, "labeled.npy"), labeled)
        log(f"cycle {cycle}/{config.cycles}: training on {len(labeled)} labels for {config.train_steps} steps")
        train_started = time.time()
        mean_losses = method.train(data.x_train, labels, labeled, config.train_steps, config.batch_size,
                                   [config.seed, cycle], verbose=config.verbose)
        train_seconds = time.time() - train_started
        with method.evaluation():
            accuracy = evaluate(method, data.x_test, data.y_test, config.eval_batch_size)
            log(f"cycle {cycle}: test accuracy {accuracy:.4f} with {num_labeled} labels")
            if cycle < config.cycles:
                selected = method.select(data.x_train, labeled, config.budget, cycle, config.eval_batch_size,
                                         verbose=config.verbose)
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
            "train_images_per_second": round(
                method.streams_per_step * config.batch_size * config.train_steps / train_seconds, 1),
            "losses": {name: round(value, 6) for name, value in mean_losses.items()},
        }
        append_result(results_path, record)
        records.append(record)
    return records
