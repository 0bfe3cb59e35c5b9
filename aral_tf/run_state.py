"""Everything a run needs to continue lives in its output directory; this module reads and writes it.

    run.json                 the run's id and identity (what must not change when it resumes)
    results.jsonl            one JSON line per finished cycle
    accuracy_vs_labels.png   test accuracy against labels, redrawn after each cycle (aral_tf/plots.py)
    cycle_K/labeled.npy      pool indices labeled while training cycle K (int64)
    cycle_K/labels.npy       their labels, as the oracle gave them (int64)
    cycle_K/selected.npy     pool indices queried after cycle K (int64)
    checkpoints/             model, optimizers and training position (tf.train.CheckpointManager)
    queries/ROUND/           an --oracle=files round's queries and the person's labels.csv
    .lock                    held (flock) by the process running the run

Files are written atomically (temporary file in the same directory, then rename); checkpoints
through tf.train.CheckpointManager, which keeps the last complete ones. A problem with these
files is raised as `RunStateError`, one line naming the file and how to recover. A directory
that holds other files and no run.json is never written to: it is not a run.
"""

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import io
import json
import os
import re
import tempfile
import uuid

import numpy as np
import tensorflow as tf

from aral_tf.cli import one_line, quiet_info_logs

RUN_FILE = "run.json"
RESULTS_FILE = "results.jsonl"
CHECKPOINT_DIR = "checkpoints"
QUERIES_DIR = "queries"
LOCK_FILE = ".lock"
TEMPORARY_PREFIX = ".tmp-"
RUN_FORMAT = 1
CHECKPOINTS_KEPT = 2
# A temporary file of write_atomic (tempfile.mkstemp's eight random characters), as a process killed
# while writing run.json, the first file of a run, leaves it.
TEMPORARY_FILE = re.compile(r"\.tmp-[a-z0-9_]{8}")
# The index file of checkpoint N, as tf.train.CheckpointManager names it.
CHECKPOINT_INDEX = re.compile(r"ckpt-(\d+)\.index")
# What a damaged run file's error adds.
RECOVER = "restore it from a copy or start anew with a new --output_dir"


class RunStateError(ValueError):
    """A run directory that cannot be continued; str(e) is one line naming the file."""


class IdentityMismatch(Exception):
    """A value the run was started with differs from the one given now."""

    def __init__(self, key, started, given):
        super().__init__(f"{key}: started with {started!r}, given {given!r}")
        self.key, self.started, self.given = key, started, given


@contextlib.contextmanager
def replaced_atomically(path, suffix=""):
    """Yields a temporary path beside `path`; on a clean exit it replaces `path`, else it is deleted.

    Readers see the old file or the whole new one, never a part (a rename within one directory).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=TEMPORARY_PREFIX, suffix=suffix)
    os.close(handle)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def write_atomic(path, payload):
    """Writes bytes to `path` through a synced temporary file in the same directory and a rename.

    An OSError (a full disk, say) names `path` as its filename.
    """
    try:
        with replaced_atomically(path) as temporary:
            with open(temporary, "wb") as stream:
                stream.write(payload)
                stream.flush()
                os.fsync(stream.fileno())
    except OSError as error:
        error.filename = path
        raise


def save_indices(path, indices):
    """Saves an int64 .npy file, atomically."""
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


def data_fingerprint(data):
    """What identifies a dataset: pool size, image shape, class count and one SHA-256 of all its arrays.

    `sha256` covers x_train, y_train, x_test, y_test (dtype, shape, bytes) and the class names, so a
    data file changed in any array is refused on resume. (Runs of earlier versions stored
    `x_train_sha256`, of x_train alone; they no longer match.) The pool's labels are hashed here for
    the run's identity only; nothing reads them for acquisition. A pool without labels (y_train None)
    hashes as an empty array.
    """
    digest = hashlib.sha256()
    for name in ("x_train", "y_train", "x_test", "y_test"):
        array = np.ascontiguousarray(np.zeros(0, np.int64) if getattr(data, name) is None else getattr(data, name))
        digest.update(f"{name} {array.dtype.str} {array.shape}\n".encode())
        digest.update(array.data)
    digest.update(json.dumps(None if data.class_names is None else list(data.class_names)).encode())
    return {"pool_size": data.pool_size, "image_shape": list(data.image_shape), "num_classes": data.num_classes,
            "sha256": digest.hexdigest()}


def _as_json(value):
    return json.loads(json.dumps(value))


class RunDirectory:
    """The files of one run in `path`."""

    def __init__(self, path):
        self.path = path
        self.results_path = os.path.join(path, RESULTS_FILE)
        self.run_path = os.path.join(path, RUN_FILE)
        self.checkpoint_dir = os.path.join(path, CHECKPOINT_DIR)
        self.queries_dir = os.path.join(path, QUERIES_DIR)

    def holds_run_files(self):
        """True when the directory holds results, checkpoints or cycle files."""
        if not os.path.isdir(self.path):
            return False
        return any(name in (RESULTS_FILE, CHECKPOINT_DIR) or name.startswith("cycle_")
                   for name in os.listdir(self.path))

    def holds_other_files(self):
        """True when the directory exists without run.json and holds anything but the lock file and a
        temporary file of run.json: the user's own files (or a run of an older version), which a run
        must not touch."""
        if not os.path.isdir(self.path) or os.path.exists(self.run_path):
            return False
        return any(name != LOCK_FILE and not (TEMPORARY_FILE.fullmatch(name)
                                              and os.path.isfile(os.path.join(self.path, name)))
                   for name in os.listdir(self.path))

    def open_run(self, identity=None):
        """The run's id; creates run.json (with `identity`) for a new run, else compares `identity` with it.

        Raises IdentityMismatch for the first key whose value differs from the stored one (keys the
        stored identity lacks are accepted), RunStateError if run.json is unreadable.
        """
        if not os.path.exists(self.run_path):
            run_id = uuid.uuid4().hex
            payload = {"format": RUN_FORMAT, "run_id": run_id, "identity": _as_json(identity or {})}
            write_atomic(self.run_path, (json.dumps(payload, indent=1, sort_keys=True) + "\n").encode())
            return run_id
        stored = self._read_run_file()
        for key, given in _as_json(identity or {}).items():
            if key in stored["identity"] and stored["identity"][key] != given:
                raise IdentityMismatch(key, stored["identity"][key], given)
        return stored["run_id"]

    def _read_run_file(self):
        try:
            with open(self.run_path, encoding="utf-8") as stream:
                stored = json.load(stream)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RunStateError(f"{self.run_path}: unreadable ({one_line(error)}); {RECOVER}") from None
        if (not isinstance(stored, dict) or stored.get("format") != RUN_FORMAT
                or not isinstance(stored.get("run_id"), str) or not isinstance(stored.get("identity"), dict)):
            raise RunStateError(f"{self.run_path}: not a run file of this version (format {RUN_FORMAT}); "
                                "continue it with the version that started it or choose a new --output_dir")
        return stored

    @contextlib.contextmanager
    def locked(self, on_wait=None):
        """Holds an exclusive lock on the run for the duration; RunStateError if another process has it,
        or, given `on_wait`, calls it once and waits for the other process to let go."""
        os.makedirs(self.path, exist_ok=True)
        handle = os.open(os.path.join(self.path, LOCK_FILE), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if on_wait is None:
                    raise RunStateError(f"{self.path}: another process is running this run") from None
                on_wait()
                fcntl.flock(handle, fcntl.LOCK_EX)
            yield self
        finally:
            os.close(handle)

    def newest_checkpoint_number(self):
        """N of the newest checkpoints/ckpt-N.index, or -1; from the file names alone (nothing is read)."""
        names = os.listdir(self.checkpoint_dir) if os.path.isdir(self.checkpoint_dir) else []
        numbers = [int(match.group(1)) for match in map(CHECKPOINT_INDEX.fullmatch, names) if match]
        return max(numbers, default=-1)

    def remove_temporaries(self):
        """Deletes the temporary files a process killed while writing left (call with the lock held).

        Only where the run writes them: its top level, cycle_K/ and queries/ROUND/; nothing below.
        """
        directories = [self.path] + [os.path.join(self.path, name) for name in os.listdir(self.path)
                                     if name.startswith("cycle_")]
        if os.path.isdir(self.queries_dir):
            directories += [os.path.join(self.queries_dir, name) for name in os.listdir(self.queries_dir)]
        for directory in filter(os.path.isdir, directories):
            for name in os.listdir(directory):
                path = os.path.join(directory, name)
                if name.startswith(TEMPORARY_PREFIX) and os.path.isfile(path):
                    os.remove(path)

    def read_results(self):
        """The records of results.jsonl (cycles 0, 1, ... in order); [] for a new run."""
        if not os.path.exists(self.results_path):
            return []
        records = []
        with open(self.results_path, "rb") as stream:
            for number, line in enumerate(stream, start=1):
                try:
                    record = json.loads(line)
                except (UnicodeDecodeError, json.JSONDecodeError):
                    raise RunStateError(f"{self.results_path}: line {number} is not JSON; {RECOVER}") from None
                if not isinstance(record, dict) or record.get("cycle") != len(records):
                    raise RunStateError(f"{self.results_path}: line {number} is not the record of cycle "
                                        f"{len(records)}; {RECOVER}")
                records.append(record)
        return records

    def append_result(self, record):
        append_result(self.results_path, record)

    def cycle_file(self, cycle, name):
        """Path of `name` (e.g. labeled.npy) in the directory of cycle `cycle`."""
        return os.path.join(self.path, f"cycle_{cycle}", name)

    def has(self, cycle, name):
        return os.path.exists(self.cycle_file(cycle, name))

    def save_array(self, cycle, name, values):
        """Saves int64 values as cycle_K/name, atomically; returns the path relative to the run."""
        save_indices(self.cycle_file(cycle, name), values)
        return os.path.join(f"cycle_{cycle}", name)

    def load_array(self, cycle, name):
        """A rank-1 int64 array saved by save_array."""
        path = self.cycle_file(cycle, name)
        try:
            values = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise RunStateError(f"{path}: unreadable ({one_line(error)}); {RECOVER}") from None
        if not isinstance(values, np.ndarray) or values.dtype != np.int64 or values.ndim != 1:
            raise RunStateError(f"{path}: not a rank-1 int64 array; {RECOVER}")
        return values



@dataclasses.dataclass
class TrainingPosition:
    """Where training stands at a checkpoint: after `step` of `cycle`'s steps.

    `stream_state` is the batch stream's generator state, `loss_sums` the sums of each loss over
    the cycle's steps so far, `train_seconds` the training time spent on them.
    """

    cycle: int
    step: int
    stream_state: dict
    loss_sums: dict
    train_seconds: float


class RunCheckpoint:
    """Checkpoints of the model, its optimizers and the training position, tagged with the run's id.

    The tf.train.Checkpoint holds the model (E, G, D, S and the three Adam optimizers, including the
    moving average of D's weights), every model variable by position (Keras keeps the random-seed
    state of its noise and dropout layers in variables that checkpoint tracking misses) and a JSON
    string with the run id and the `TrainingPosition`.
    """

    def __init__(self, model, directory, run_id, max_to_keep=CHECKPOINTS_KEPT):
        self._model = model
        self._run_id = run_id
        self._state_file = os.path.join(directory, "checkpoint")
        self._position = tf.Variable("", dtype=tf.string, trainable=False)
        self._checkpoint = tf.train.Checkpoint(model=model, model_variables=list(model.variables),
                                               position=self._position)
        try:
            self._manager = tf.train.CheckpointManager(self._checkpoint, directory, max_to_keep=max_to_keep)
        except UnicodeDecodeError:  # the state file is read here, as text
            raise RunStateError(self._damaged_state_file()) from None

    def _damaged_state_file(self):
        return (f"{self._state_file}: not a readable checkpoint state file; write it anew naming the newest "
                f"intact checkpoint (one line: model_checkpoint_path: \"ckpt-N\") or choose a new --output_dir")

    def _damaged(self, path, what):
        """The error for a damaged checkpoint `path`: how to fall back on the one before it."""
        return (f"{path}: {what}; continue from the previous checkpoint by naming it in {self._state_file} "
                f"(model_checkpoint_path: \"ckpt-N\"), or choose a new --output_dir")

    @property
    def latest_path(self):
        return self._manager.latest_checkpoint

    def save(self, position):
        """Writes a checkpoint at `position`; refuses (FloatingPointError) if a weight is not finite."""
        for variable in self._model.variables:
            value = np.asarray(variable.numpy())
            if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
                raise FloatingPointError(f"{variable.path} is not finite at cycle {position.cycle} step "
                                         f"{position.step}; the last good checkpoint is kept")
        self._position.assign(json.dumps({"run_id": self._run_id, **dataclasses.asdict(position)}))
        with quiet_info_logs():
            return self._manager.save()

    def restore_latest(self):
        """Restores the newest checkpoint and returns its TrainingPosition; None if there is none."""
        path = self._manager.latest_checkpoint
        if path is None:
            if os.path.exists(self._state_file):
                raise RunStateError(self._damaged_state_file())
            return None
        stored = self._read_position(path)
        if stored.pop("run_id", None) != self._run_id:
            raise RunStateError(f"{path}: a checkpoint of another run (run.json gives id {self._run_id}); "
                                "it cannot continue this one")
        try:
            self._checkpoint.restore(path).assert_existing_objects_matched()
        except Exception as error:  # pylint: disable=broad-except  # damaged files raise many types
            raise RunStateError(self._damaged(path, f"does not fit this model ({one_line(error, limit=200)})")) \
                from None
        try:
            return TrainingPosition(**stored)
        except TypeError:
            raise RunStateError(self._damaged(path, "its training position is incomplete")) from None

    def _read_position(self, path):
        try:
            text = tf.train.load_checkpoint(path).get_tensor("position/.ATTRIBUTES/VARIABLE_VALUE")
            stored = json.loads(text)
        except Exception as error:  # pylint: disable=broad-except  # damaged files raise many types
            raise RunStateError(self._damaged(path, f"unreadable checkpoint ({one_line(error, limit=200)})")) \
                from None
        if not isinstance(stored, dict):
            raise RunStateError(self._damaged(path, "unreadable checkpoint (no training position)"))
        return stored
