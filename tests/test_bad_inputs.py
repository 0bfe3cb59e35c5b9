"""Bad input to the command line: one line `error: ...` naming the culprit, exit code 2, the run dir intact.

Each case runs main's command line (or the export command, `python -m export`) on a copy of a
prepared run directory: `done` (a finished two-cycle run), `waiting` (an --oracle=files run waiting
for its initial labels), `full` (a finished --method=full run) or `new` (a path that does not exist
yet). The cases run in this process (absl flags are re-parsed each time; the exit code is SystemExit's);
a few also run as real subprocesses. The directory's files must be byte-for-byte the same afterwards (`new`: it must not
exist).
"""

import contextlib
import dataclasses
import errno
import fcntl
import functools
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from unittest import mock
import zipfile

from absl import flags
import numpy as np
import pytest
import tensorflow as tf

from aral_tf import resources
from export import __main__ as export_command
import main

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
BASE = ["--dataset={tiny}", "--train_steps=2", "--checkpoint_every=1", "--batch_size=4", "--eval_batch_size=8",
        "--initial_labels=4", "--budget=2", "--cycles=1", "--width=0.02", "--latent_dim=4", "--noprogress",
        "--noexport"]


@dataclasses.dataclass(frozen=True)
class Case:
    """`arguments` follow BASE (later flags win; for `export`, they are all); `prepare(run_dir, files)`
    damages the copy first; `patch()`, a context manager, holds while the command runs (in this process
    only). In arguments and culprit, {run} is the copy, other {names} files. `code` 1 is a run stopped by
    the machine (a full disk): its files stay as they were, only empty directories may appear."""

    name: str
    arguments: tuple
    culprit: str
    run: str = "done"
    prepare: object = None
    hold_lock: bool = False
    command: str = "main"
    patch: object = None
    code: int = 2


def _write(path, payload):
    with open(path, "wb") as stream:
        stream.write(payload)


def _write_labels(text):
    def prepare(run_dir, files):  # pylint: disable=unused-argument
        _write(os.path.join(run_dir, "queries", "initial", "labels.csv"), text.format(**files).encode())
    return prepare


def _labels(rows):
    """labels.csv text with a header and `rows`; {q0}..{q3} stand for the four queried indices."""
    return "pool_index,label\n" + "".join(row + "\n" for row in rows)


ALL_LABELED = ["{q0},0", "{q1},1", "{q2},2", "{q3},1"]


def _replace_checkpoints_with(other):
    def prepare(run_dir, files):
        shutil.rmtree(os.path.join(run_dir, "checkpoints"))
        shutil.copytree(os.path.join(files[other], "checkpoints"), os.path.join(run_dir, "checkpoints"))
    return prepare


def _truncate_checkpoint_data(run_dir, files):  # pylint: disable=unused-argument
    directory = os.path.join(run_dir, "checkpoints")
    for name in os.listdir(directory):
        if name.endswith(".data-00000-of-00001"):
            with open(os.path.join(directory, name), "r+b") as stream:
                stream.truncate(64)


def _delete_checkpoint_files(run_dir, files):  # pylint: disable=unused-argument
    directory = os.path.join(run_dir, "checkpoints")
    for name in os.listdir(directory):
        if name.startswith("ckpt-"):
            os.remove(os.path.join(directory, name))


def _point_state_at_older_checkpoint(run_dir, files):  # pylint: disable=unused-argument
    directory = os.path.join(run_dir, "checkpoints")
    numbers = sorted(int(name[5:-6]) for name in os.listdir(directory) if name.endswith(".index"))
    _write(os.path.join(directory, "checkpoint"), f'model_checkpoint_path: "ckpt-{numbers[0]}"\n'.encode())


def _overwrite(relative_path, payload):
    def prepare(run_dir, files):  # pylint: disable=unused-argument
        _write(os.path.join(run_dir, relative_path), payload)
    return prepare


def _save_array(relative_path, array):
    def prepare(run_dir, files):  # pylint: disable=unused-argument
        np.save(os.path.join(run_dir, relative_path), array)
    return prepare


def _remove(relative_path):
    def prepare(run_dir, files):  # pylint: disable=unused-argument
        path = os.path.join(run_dir, relative_path)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    return prepare


def _change_stored_image_hash(run_dir, files):  # pylint: disable=unused-argument
    path = os.path.join(run_dir, "run.json")
    with open(path, encoding="utf-8") as stream:
        stored = json.load(stream)
    stored["identity"]["pool_fingerprint"]["sha256"] = "0" * 64
    _write(path, json.dumps(stored).encode())


def _user_files(run_dir, files):  # pylint: disable=unused-argument
    """A directory of the user's own files, named like a run's and its temporaries."""
    os.makedirs(os.path.join(run_dir, "notes", "sub"))
    for name in ("flags.txt", "model.keras", "notes/sub/.tmp-draft.txt"):
        _write(os.path.join(run_dir, name), b"the user's own text\n")


def _started_with(name):
    """Makes the run's stored --dataset the file `name`, as if that file had been overwritten in place
    (its fingerprint stays the one of the data the run started with)."""
    def prepare(run_dir, files):
        path = os.path.join(run_dir, "run.json")
        with open(path, encoding="utf-8") as stream:
            stored = json.load(stream)
        stored["identity"]["dataset"] = files[name]
        _write(path, json.dumps(stored).encode())
    return prepare


def _truncate(relative_path):
    def prepare(run_dir, files):  # pylint: disable=unused-argument
        with open(os.path.join(run_dir, relative_path), "r+b") as stream:
            stream.truncate(os.path.getsize(os.path.join(run_dir, relative_path)) // 2)
    return prepare


def _disk_full_at_fsync():
    return mock.patch.object(os, "fsync", side_effect=OSError(errno.ENOSPC, "No space left on device"))


def _machine_with(**figures):
    """resources' figures replaced (available_memory, free_disk) for the command's duration."""
    stack = contextlib.ExitStack()
    for name, value in figures.items():
        stack.enter_context(mock.patch.object(resources, name, return_value=value))
    return stack


CASES = [
    # Flags.
    Case("unknown flag", ("--no_such_flag=1",), "no_such_flag"),
    Case("integer flag not an integer", ("--batch_size=abc",), "--batch_size"),
    Case("enum flag unknown value", ("--oracle=human",), "--oracle"),
    Case("unknown architecture", ("--architecture=transformer",), "--architecture"),
    Case("unknown method", ("--method=margin",), "--method=margin: unknown method; choose one of aral, vaal"),
    Case("too few MC passes", ("--method=bald", "--mc_passes=1"), "--mc_passes"),
    Case("unknown network to restart", ("--restart_each_cycle=discriminator,classifier",),
         "--restart_each_cycle=discriminator,classifier: unknown network 'classifier'"),
    Case("positional argument", ("extra",), "extra"),
    Case("zero budget", ("--budget=0",), "--budget=0"),
    Case("budget larger than the pool", ("--budget=40",), "--budget=40"),
    Case("negative train steps", ("--train_steps=-1",), "--train_steps=-1"),
    Case("zero initial labels", ("--initial_labels=0",), "--initial_labels=0"),
    Case("initial labels fill the pool", ("--initial_labels=40", "--budget=1", "--cycles=0"),
         "--initial_labels=40"),
    Case("negative cycles", ("--cycles=-1",), "--cycles=-1"),
    Case("zero width", ("--width=0",), "--width=0"),
    Case("zero latent dimension", ("--latent_dim=0",), "--latent_dim=0"),
    Case("zero evaluation batch", ("--eval_batch_size=0",), "--eval_batch_size=0"),
    Case("negative seed", ("--seed=-1",), "--seed=-1"),
    Case("seed above 2**32 - 1", ("--seed=4294967296",), "--seed=4294967296: 4294967296 is not an integer in"),
    Case("absurd train steps", ("--train_steps=99999999999999999999999",),
         "--train_steps=99999999999999999999999: 99999999999999999999999 is not an integer in the range"),
    Case("absurd cycles", ("--cycles=1000000",), "--cycles=1000000: 1000000 is not an integer in the range"),
    Case("absurd evaluation batch", ("--eval_batch_size=1000000000",),
         "--eval_batch_size=1000000000: 1000000000 is not an integer in the range"),
    Case("absurd budget", ("--budget=1000000000000",), "--budget=1000000000000: 1000000000000 is not an integer"),
    Case("missing flagfile", ("--flagfile={workdir}/missing.flags",),
         "error: Unable to open flagfile: [Errno 2] No such file or directory"),
    Case("evaluation batch beyond the memory", ("--eval_batch_size=60000",),
         "--eval_batch_size=60000: a batch of 60000 images of 8x8x1 needs about 58.6 MiB of memory, 1.0 MiB is "
         "available", patch=lambda: _machine_with(available_memory=2**20)),
    Case("checkpoints beyond the free disk", ("--cycles=2",),
         "its checkpoints, model.keras and export need about", patch=lambda: _machine_with(free_disk=1000)),
    Case("zero checkpoint interval", ("--checkpoint_every=0",), "--checkpoint_every=0"),
    Case("negative learning rate", ("--lr_discriminator=-0.1",), "--lr_discriminator=-0.1"),
    Case("zero classifier learning rate", ("--lr_classifier=0",), "--lr_classifier=0.0"),
    Case("NaN learning rate", ("--lr_sampler=nan",), "--lr_sampler=nan"),
    Case("negative loss weight", ("--lambda_adv=-1",), "--lambda_adv=-1"),
    Case("average momentum of 1", ("--classifier_average=1",), "--classifier_average=1"),
    Case("dropout above 1", ("--dropout_rate=1.5",), "--dropout_rate=1.5"),
    Case("cnn on 28x28 images", ("--dataset=mnist", "--data_file={mnist28}", "--architecture=cnn"),
         "--architecture=cnn"),
    Case("unknown dataset", ("--dataset=fashion_mnist",), "--dataset=fashion_mnist"),
    Case("output dir below a file", ("--output_dir={blocker}/run",), "--output_dir", run="new"),
    Case("output dir of the user's own files", (), "holds files but no run.json, so it is not a run", run="new",
         prepare=_user_files),
    Case("TensorBoard dir below a file", ("--tensorboard_dir={blocker}/tb",),
         "--tensorboard_dir={blocker}/tb"),
    # Strategies (a TPU that is not there and a malformed TF_CONFIG: test_main.py, in subprocesses).
    Case("TPU strategy without an address", ("--strategy=tpu",), "--tpu: required with --strategy=tpu"),
    Case("mixed precision without a GPU", ("--mixed_precision",), "--mixed_precision: needs a GPU"),
    Case("class-balanced selection with another method", ("--selection=class_balanced", "--method=aral_random"),
         "--selection=class_balanced: only with --method=aral"),
    Case("negative pretraining steps", ("--pretrain_steps=-1",), "--pretrain_steps"),
    Case("unknown initial selection", ("--initial_selection=kmeans",), "--initial_selection"),
    Case("Eq. 9 gate of 1", ("--generated_cls_confidence=1",), "--generated_cls_confidence"),
    Case("unknown sampler conditioning", ("--sampler_conditioning=none",), "--sampler_conditioning"),
    Case("unknown selection", ("--selection=farthest",), "--selection"),
    Case("lowest-in-clusters for another method",
         ("--selection=lowest_in_clusters", "--method=random"), "--selection=lowest_in_clusters: only with"),
    Case("TypiClust on features without pretraining", ("--initial_selection=typiclust_features",),
         "--initial_selection=typiclust_features: needs --pretrain_steps > 0"),
    Case("TypiClust on features of a D not kept", ("--initial_selection=typiclust_features", "--pretrain_steps=2",
                                                   "--pretrain_networks=encoder"),
         "--initial_selection=typiclust_features: needs --pretrain_steps > 0 and discriminator"),
    Case("unknown pretrained network", ("--pretrain_networks=encoder,classifier",),
         "--pretrain_networks=encoder,classifier: unknown network 'classifier'"),
    Case("initial selection and initial indices", ("--initial_selection=typiclust",
                                                   "--initial_indices={duplicate_indices}"),
         "--initial_selection=typiclust: cannot be combined with --initial_indices"),
    Case("negative class feature matching", ("--class_feature_matching=-1",),
         "--class_feature_matching=-1.0: must be a finite number >= 0"),
    # Data files.
    Case("missing data file", ("--dataset=mnist", "--data_file={workdir}/missing.npz"), "missing.npz"),
    Case("data file not an archive", ("--dataset={garbage}",), "garbage.bin"),
    Case("data file a single array", ("--dataset={single_array}",), "single.npy"),
    Case("data needs pickle", ("--dataset={pickled_npz}",), "pickled.npz: cannot read arrays (it holds pickled"),
    Case("data without y_train", ("--dataset={no_labels}",), "y_train"),
    Case("float images", ("--dataset={float_images}",), "x_train has dtype float32"),
    Case("rank-3 images", ("--dataset={rank3}",), "x_train has shape"),
    Case("negative label", ("--dataset={negative_label}",), "y_train contains label -1"),
    Case("label beyond the classes", ("--dataset=mnist", "--data_file={label12}"), "y_train contains label 12"),
    Case("fewer labels than images", ("--dataset={short_labels}",), "x_train has 40 images but y_train has 39"),
    Case("empty test split", ("--dataset={empty_test}",), "x_test is empty"),
    Case("two channels", ("--dataset={two_channels}",), "2 channels"),
    Case("train and test shapes differ", ("--dataset={shape_mismatch}",), "x_test images are 9x9x1"),
    Case("wrong image size for the dataset", ("--dataset=mnist", "--data_file={tiny}"), "needs 28x28x1"),
    Case("text file named .npz", ("--dataset={text_npz}",), "text.npz: not an .npz file (it starts with b'x_tr'"),
    Case("images too large for memory", ("--dataset={huge}",), "huge.npz: its arrays need 4.4 PiB of memory"),
    Case("images with a side above 1024", ("--dataset={tall}",), "tall.npz: images are 1100x8x1; their sides"),
    Case("a stray label of 10,000,000", ("--dataset={stray_label}",),
         "stray.npz: the largest label is 10000000 but only 4 distinct labels appear"),
    Case("npz given twice", ("--data_file={tiny}",), "--data_file"),
    # Initial-index files.
    Case("missing index file", ("--initial_indices={workdir}/none.npy",), "none.npy: no such file"),
    Case("float indices", ("--initial_indices={float_indices}",), "dtype float64"),
    Case("2-D indices", ("--initial_indices={indices_2d}",), "must be rank 1"),
    Case("empty indices", ("--initial_indices={empty_indices}",), "is empty"),
    Case("index beyond the pool", ("--initial_indices={index40}",), "index 40 is outside the pool [0, 40)"),
    Case("negative index", ("--initial_indices={negative_index}",), "index -2 is outside"),
    Case("duplicate index", ("--initial_indices={duplicate_indices}",), "index 3 appears more than once"),
    Case("indices of the whole pool", ("--initial_indices={all_indices}",), "lists all 40 pool images"),
    Case("indices in an npz", ("--initial_indices={indices_npz}",), "is an .npz archive"),
    Case("indices needing pickle", ("--initial_indices={pickled_indices}",),
         "pickled_indices.npy: not a readable .npy file (it holds pickled Python objects, which are never loaded"),
    Case("initial labels contradict the index file", ("--initial_indices={first_four}", "--initial_labels=5"),
         "--initial_labels=5: --initial_indices={first_four} gives 4 initial labels; drop one of the two"),
    # Continuing a run with changed flags, or from a damaged run directory.
    Case("changed seed", ("--seed=1",), "--seed=1: this run was started with --seed=0"),
    Case("changed budget", ("--budget=3",), "--budget=3: this run was started with --budget=2"),
    Case("changed batch size", ("--batch_size=8",), "--batch_size=8: this run was started with --batch_size=4"),
    Case("changed width", ("--width=0.03",), "--width=0.03: this run was started with --width=0.02"),
    Case("changed oracle", ("--oracle=files",), "--oracle=files: this run was started with --oracle=simulated"),
    Case("changed XLA compilation", ("--jit_compile",),
         "--jit_compile=True: this run was started with --jit_compile=False"),
    Case("added initial indices", ("--initial_indices={first_four}",),
         "this run was started without --initial_indices"),
    Case("other data file", ("--dataset={tiny_other}",), "--dataset={tiny_other}: this run was started with"),
    Case("images changed since the start", (), "--dataset={tiny}: these are not the data this run was started",
         prepare=_change_stored_image_hash),
    Case("labels changed since the start", ("--dataset={relabeled}",),
         "--dataset={relabeled}: these are not the data this run was started with", prepare=_started_with("relabeled")),
    Case("test images changed since the start", ("--dataset={new_test}",),
         "--dataset={new_test}: these are not the data this run was started with", prepare=_started_with("new_test")),
    Case("fewer cycles than finished", ("--cycles=0",), "--cycles=0: this run already finished cycle 1"),
    Case("full run of another schedule", ("--method=full", "--cycles=2"),
         "--cycles=2: this full run trained 4 steps, not --train_steps x (--cycles + 1) = 6", run="full"),
    Case("initial set differs", (), "--initial_labels=4: not the initial labeled set",
         prepare=_save_array("cycle_0/labeled.npy", np.array([0, 1, 2, 3]))),
    Case("run.json not JSON", (), "run.json: unreadable (Expecting property name enclosed in double quotes: line 1 "
         "column 2 (char 1)); restore it from a copy or start anew with a new --output_dir",
         prepare=_overwrite("run.json", b"{oops")),
    Case("run.json of another version", (), "run.json: not a run file",
         prepare=_overwrite("run.json", b'{"format": 0, "run_id": "x", "identity": {}}')),
    Case("run files without run.json", (), "holds run files but no run.json", prepare=_remove("run.json")),
    Case("results.jsonl damaged", ("--cycles=2",),
         "results.jsonl: line 2 is not JSON; restore it from a copy or start anew with a new --output_dir",
         prepare=_overwrite("results.jsonl", b'{"cycle": 0}\n{"cycle": \n')),
    Case("labels.npy damaged", ("--cycles=2",), "cycle_1/labels.npy: not a rank-1 int64 array",
         prepare=_save_array("cycle_1/labels.npy", np.array([0.5, 1.5]))),
    Case("run used by another process", ("--cycles=2",), "another process is running this run", hold_lock=True),
    # Checkpoints from another run, or damaged.
    Case("checkpoints of another run", ("--cycles=2",), "a checkpoint of another run",
         prepare=_replace_checkpoints_with("other_run")),
    Case("checkpoint data truncated", ("--cycles=2",), "continue from the previous checkpoint by naming it in",
         prepare=_truncate_checkpoint_data),
    Case("checkpoint state not UTF-8", ("--cycles=2",),
         "checkpoints/checkpoint: not a readable checkpoint state file; write it anew naming the newest intact",
         prepare=_overwrite("checkpoints/checkpoint", b"model_checkpoint_path: \"\xff\xfe\x80\"\n")),
    Case("disk full while continuing", ("--cycles=2",), "cycle_1/selected.npy: no space left on device",
         patch=_disk_full_at_fsync, code=1),
    Case("checkpoint state garbage", ("--cycles=2",), "checkpoints/checkpoint: not a readable checkpoint state",
         prepare=_overwrite("checkpoints/checkpoint", b"garbage {")),
    Case("checkpoint files deleted", ("--cycles=2",), "unreadable checkpoint", prepare=_delete_checkpoint_files),
    Case("no checkpoint left", ("--cycles=2",), "no checkpoint to continue from", prepare=_remove("checkpoints")),
    Case("checkpoint older than the results", ("--cycles=2",), "but results.jsonl lists 2 finished cycles",
         prepare=_point_state_at_older_checkpoint),
    # Labels files of --oracle=files (the initial round queried four indices, {q0}..{q3}).
    Case("labels without header", ("--oracle=files",), "labels.csv: line 1: the header", run="waiting",
         prepare=_write_labels("\n".join(ALL_LABELED))),
    Case("labels header misnamed", ("--oracle=files",), "labels.csv: line 1: the header", run="waiting",
         prepare=_write_labels("index,class\n" + "\n".join(ALL_LABELED))),
    Case("labels file empty", ("--oracle=files",), "labels.csv: line 1: the header", run="waiting",
         prepare=_write_labels("")),
    Case("labels pool index not a number", ("--oracle=files",), "labels.csv: line 2: pool_index 'x7'",
         run="waiting", prepare=_write_labels(_labels(["x7,1"] + ALL_LABELED))),
    Case("labels unknown index", ("--oracle=files",), "labels.csv: line 6: pool index 999 was not queried",
         run="waiting", prepare=_write_labels(_labels(ALL_LABELED + ["999,1"]))),
    Case("labels index twice", ("--oracle=files",), "labels.csv: line 6: pool index {q0} is labeled again",
         run="waiting", prepare=_write_labels(_labels(ALL_LABELED + ["{q0},2"]))),
    Case("labels class index too large", ("--oracle=files",), "labels.csv: line 2: label '3'", run="waiting",
         prepare=_write_labels(_labels(["{q0},3"] + ALL_LABELED[1:]))),
    Case("label not a class name", ("--oracle=files",), "labels.csv: line 3: label 'cat'", run="waiting",
         prepare=_write_labels(_labels(ALL_LABELED[:1] + ["{q1},cat"] + ALL_LABELED[2:]))),
    Case("label empty", ("--oracle=files",), "labels.csv: line 2: label ''", run="waiting",
         prepare=_write_labels(_labels(["{q0},"] + ALL_LABELED[1:]))),
    Case("labels row with three columns", ("--oracle=files",), "labels.csv: line 2: expected 2 columns",
         run="waiting", prepare=_write_labels(_labels(["{q0},0,extra"] + ALL_LABELED[1:]))),
    Case("labels missing an index", ("--oracle=files",), "1 of the 4 queried pool indices have no label",
         run="waiting", prepare=_write_labels(_labels(ALL_LABELED[:3]))),
    Case("labels field too long", ("--oracle=files",), "labels.csv: line 3: a field of 2,000 characters",
         run="waiting", prepare=_write_labels(_labels(ALL_LABELED[:1] + ["{q1}," + "x" * 2000] + ALL_LABELED[2:]))),
    Case("labels file too large", ("--oracle=files",),
         "bytes, more than the 69,632 a labels file of 4 queries may have",
         run="waiting", prepare=_write_labels(_labels(ALL_LABELED) + "\n" * 300000)),
    Case("labels not UTF-8", ("--oracle=files",), "labels.csv: not UTF-8 text", run="waiting",
         prepare=_overwrite("queries/initial/labels.csv", b"pool_index,label\n1,\xff\n")),
    # Export requests (python -m export --run_dir=DIR --export_dir=EXPORT); each a case of its own.
    Case("export without run dir", (), "--run_dir: required", command="export"),
    Case("export of a missing run dir", ("--run_dir={workdir}/nowhere",), "nowhere: no such directory",
         command="export"),
    Case("export of a run still waiting for labels", ("--run_dir={run}",), "holds no model.keras", run="waiting",
         command="export"),
    Case("export of a damaged model", ("--run_dir={run}",), "model.keras cannot be loaded", command="export",
         prepare=_overwrite("model.keras", b"not a zip")),
    Case("export of a truncated model", ("--run_dir={run}",),
         "model.keras cannot be loaded (not a complete .keras zip archive", command="export",
         prepare=_truncate("model.keras")),
    Case("export to a directory below a file", ("--run_dir={run}", "--export_dir={blocker}/models"),
         "--export_dir={blocker}/models: not writable", command="export"),
    Case("export with an unknown flag", ("--run_dir={run}", "--format=onnx"), "format", command="export"),
]


def _data_files(workdir):
    """Every input file the cases refer to, by placeholder name."""
    rng = np.random.default_rng(0)

    def npz(name, train=40, test=10, shape=(8, 8, 1), **overrides):
        arrays = {"x_train": rng.integers(0, 256, (train,) + shape, dtype=np.uint8),
                  "y_train": np.arange(train) % 3,
                  "x_test": rng.integers(0, 256, (test,) + shape, dtype=np.uint8), "y_test": np.arange(test) % 3}
        arrays.update(overrides)
        path = os.path.join(workdir, name)
        np.savez(path, **{key: value for key, value in arrays.items() if value is not None})
        return path

    def npy(name, array, **options):
        path = os.path.join(workdir, name)
        np.save(path, array, **options)
        return path

    files = {
        "workdir": workdir,
        "tiny": npz("tiny.npz"),
        "tiny_other": npz("other.npz"),
        "mnist28": npz("mnist28.npz", train=30, shape=(28, 28, 1), y_train=np.arange(30) % 10,
                       y_test=np.arange(10) % 10),
        "no_labels": npz("no_labels.npz", y_train=None),
        "float_images": npz("float.npz", x_train=np.zeros((40, 8, 8, 1), np.float32)),
        "rank3": npz("rank3.npz", x_train=np.zeros((40, 8, 8), np.uint8)),
        "negative_label": npz("negative.npz", y_train=np.arange(40) % 3 - 1),
        "label12": npz("label12.npz", shape=(28, 28, 1), y_train=np.full(40, 12)),
        "short_labels": npz("short.npz", y_train=np.arange(39) % 3),
        "empty_test": npz("empty_test.npz", test=0),
        "two_channels": npz("two_channels.npz", shape=(8, 8, 2)),
        "shape_mismatch": npz("shape_mismatch.npz", x_test=np.zeros((10, 9, 9, 1), np.uint8)),
        "pickled_npz": os.path.join(workdir, "pickled.npz"),
        "garbage": os.path.join(workdir, "garbage.bin"),
        "single_array": npy("single.npy", np.zeros(3, np.int64)),
        "float_indices": npy("float_indices.npy", np.array([1.0, 2.0])),
        "indices_2d": npy("indices_2d.npy", np.array([[1, 2]])),
        "empty_indices": npy("empty_indices.npy", np.zeros(0, np.int64)),
        "index40": npy("index40.npy", np.array([1, 40])),
        "negative_index": npy("negative_index.npy", np.array([-2, 5])),
        "duplicate_indices": npy("duplicate_indices.npy", np.array([3, 5, 3])),
        "all_indices": npy("all_indices.npy", np.arange(40)),
        "first_four": npy("first_four.npy", np.arange(4)),
        "pickled_indices": npy("pickled_indices.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True),
        "indices_npz": os.path.join(workdir, "indices.npz"),
        "blocker": os.path.join(workdir, "a_file"),
        "relabeled": os.path.join(workdir, "relabeled.npz"),
        "new_test": os.path.join(workdir, "new_test.npz"),
        "huge": os.path.join(workdir, "huge.npz"),
        "text_npz": os.path.join(workdir, "text.npz"),
        "tall": npz("tall.npz", shape=(1100, 8, 1)),
        "stray_label": npz("stray.npz", y_train=np.r_[np.arange(39) % 3, 10**7]),
    }
    np.savez(files["pickled_npz"], x_train=np.array([{"a": 1}], dtype=object), y_train=np.arange(3),
             x_test=np.zeros((1, 8, 8, 1), np.uint8), y_test=np.arange(1))
    np.savez(files["indices_npz"], indices=np.arange(3))
    with np.load(files["tiny"], allow_pickle=False) as tiny:
        arrays = dict(tiny)
    np.savez(files["relabeled"], **{**arrays, "y_train": (arrays["y_train"] + 1) % 3})
    np.savez(files["new_test"], **{**arrays, "x_test": 255 - arrays["x_test"]})
    # A header that announces 4.4 PiB of images and no data after it.
    with zipfile.ZipFile(files["huge"], "w") as archive:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                      "shape": (5000, 10**6, 10**6, 1)})
        archive.writestr("x_train.npy", header.getvalue())
        for key in ("y_train", "x_test", "y_test"):
            buffer = io.BytesIO()
            np.save(buffer, arrays[key])
            archive.writestr(f"{key}.npy", buffer.getvalue())
    _write(files["text_npz"], b"x_train,y_train\n1,2\n")
    _write(files["garbage"], b"not an archive at all")
    _write(files["blocker"], b"x")
    return files


def run_cli(arguments):
    """main's command line in this process: (exit code, stderr). Flags are reset before and after."""
    FLAGS.unparse_flags()
    stderr = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            main.main(main.parse_flags(["main.py", *arguments]))
        except SystemExit as exit_:
            code = exit_.code
        finally:
            FLAGS.unparse_flags()
    return code, stderr.getvalue()


def run_export_cli(arguments):
    """The export command in this process: (exit code, stderr)."""
    FLAGS.unparse_flags()
    stderr = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            export_command.main(export_command.parse_flags(["export", *arguments]))
        except SystemExit as exit_:
            code = exit_.code
        finally:
            FLAGS.unparse_flags()
    return code, stderr.getvalue()


def run_subprocess(arguments, command="main"):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    program = [os.path.join(ROOT, "main.py")] if command == "main" else ["-m", "export"]
    result = subprocess.run([sys.executable, *program, *arguments], capture_output=True,
                            text=True, cwd=ROOT, env=environment, timeout=600, check=False)
    return result.returncode, result.stderr


def _formatted(arguments, files):
    return [argument.format(**files) for argument in arguments]


@pytest.fixture(name="prepared", scope="module")
def fixture_prepared():
    """Input files and four run directories: `done`, `other_run` (another seed), `waiting` and `full`."""
    with tempfile.TemporaryDirectory() as workdir:
        files = _data_files(workdir)
        base = _formatted(BASE, files)
        for name, extra in (("done", []), ("other_run", ["--seed=1"]), ("waiting", ["--oracle=files"]),
                            ("full", ["--method=full"])):
            files[name] = os.path.join(workdir, name)
            code, stderr = run_cli(base + extra + [f"--output_dir={files[name]}"])
            assert code == 0, stderr
        with open(os.path.join(files["waiting"], "queries", "initial", "queries.csv"), encoding="utf-8") as stream:
            queried = [line.split(",")[0] for line in stream.read().splitlines()[1:]]
        files.update({f"q{position}": index for position, index in enumerate(queried)})
        yield files


def snapshot(directory):
    """Relative path -> content hash (or 'dir') of everything under `directory`; None if it does not exist."""
    if not os.path.exists(directory):
        return None
    found = {}
    for parent, directories, names in os.walk(directory):
        for name in directories:
            found[os.path.relpath(os.path.join(parent, name), directory)] = "dir"
        for name in names:
            with open(os.path.join(parent, name), "rb") as stream:
                digest = hashlib.sha256(stream.read()).hexdigest()
            found[os.path.relpath(os.path.join(parent, name), directory)] = digest
    return found


def _run_case(case, files, workdir, in_process):
    run_dir = os.path.join(workdir, "run")
    if case.run != "new":
        shutil.copytree(files[case.run], run_dir)
    if case.prepare is not None:
        case.prepare(run_dir, files)
    before = snapshot(run_dir)
    if case.command == "main":
        arguments = _formatted(BASE + [f"--output_dir={run_dir}"] + list(case.arguments), files)
    else:
        arguments = _formatted(case.arguments, {**files, "run": run_dir})
    if in_process:
        runner = run_cli if case.command == "main" else run_export_cli
    else:
        runner = functools.partial(run_subprocess, command=case.command)
    with contextlib.ExitStack() as stack:
        if case.patch is not None:
            assert in_process, case.name
            stack.enter_context(case.patch())
        if case.hold_lock:
            handle = stack.enter_context(open(os.path.join(run_dir, ".lock"), "a", encoding="utf-8"))
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, stderr = runner(arguments)
    return code, stderr, before, snapshot(run_dir)


def _check(case, files, code, stderr, before, after):
    lines = stderr.strip().splitlines()
    assert code == case.code, (case.name, code, stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), (case.name, stderr)
    assert case.culprit.format(**files) in lines[0], (case.name, lines[0])
    assert "Traceback" not in stderr
    if case.code == 1:
        after = {path: kind for path, kind in after.items() if path in before or kind != "dir"}
    assert after == before, case.name


def test_there_are_at_least_40_cases_without_export():
    assert len([case for case in CASES if case.command == "main"]) >= 40
    assert len({case.name for case in CASES}) == len(CASES)


def test_the_readme_counts_the_cases():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as stream:
        readme = " ".join(stream.read().split())
    exports = len([case for case in CASES if case.command == "export"])
    assert f"checks {len(CASES)} such inputs ({exports} for `python -m export`)" in readme


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input(case, prepared):
    with tempfile.TemporaryDirectory() as workdir:
        _check(case, prepared, *_run_case(case, prepared, workdir, in_process=True))


SUBPROCESS_CASES = ("unknown flag", "changed seed", "checkpoints of another run", "labels index twice",
                    "export of a damaged model")


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_bad_input_in_a_subprocess(name, prepared):
    case = next(case for case in CASES if case.name == name)
    with tempfile.TemporaryDirectory() as workdir:
        _check(case, prepared, *_run_case(case, prepared, workdir, in_process=False))


def _without_noexport(arguments):
    return [argument for argument in arguments if argument != "--noexport"]


@pytest.mark.parametrize("killed_during", ["classifier", "sampler"])
def test_an_export_stopped_midway_is_finished_by_the_next_run(killed_during, prepared):
    """Killed while saving one SavedModel (its `.tmp-` directory left; with the sampler, classifier/1 is done)."""
    with tempfile.TemporaryDirectory() as workdir:
        run_dir = os.path.join(workdir, "run")
        shutil.copytree(prepared["done"], run_dir)
        export_dir = os.path.join(run_dir, "export")
        os.makedirs(os.path.join(export_dir, killed_during, ".tmp-1-abcd", "variables"))
        if killed_during == "sampler":
            os.makedirs(os.path.join(export_dir, "classifier", "1"))
        code, stderr = run_cli(_without_noexport(_formatted(BASE, prepared)) + [f"--output_dir={run_dir}"])
        assert code == 0, stderr
        for name in ("classifier", "sampler"):
            assert sorted(os.listdir(os.path.join(export_dir, name))) == ["1"], name
        assert os.path.exists(os.path.join(export_dir, "sampler", "1", "saved_model.pb"))
        # A finished part is not written again.
        assert (killed_during == "sampler") == (os.listdir(os.path.join(export_dir, "classifier", "1")) == [])
        code, stderr = run_cli(_without_noexport(_formatted(BASE, prepared)) + [f"--output_dir={run_dir}"])
        assert code == 0 and sorted(os.listdir(os.path.join(export_dir, "sampler"))) == ["1"], stderr


def test_a_run_stopped_by_a_full_disk_continues_as_an_uninterrupted_one(prepared):
    with tempfile.TemporaryDirectory() as workdir:
        runs = {name: os.path.join(workdir, name) for name in ("stopped", "uninterrupted")}
        for path in runs.values():
            shutil.copytree(prepared["done"], path)
        arguments = {name: _formatted(BASE, prepared) + [f"--output_dir={path}", "--cycles=2"]
                     for name, path in runs.items()}
        with _disk_full_at_fsync():
            code, stderr = run_cli(arguments["stopped"])
        assert code == 1 and "no space left on device" in stderr, stderr
        for name in ("stopped", "uninterrupted"):
            code, stderr = run_cli(arguments[name])
            assert code == 0, stderr
        results = {}
        for name, path in runs.items():
            with open(os.path.join(path, "results.jsonl"), encoding="utf-8") as stream:
                results[name] = [(record["num_labeled"], record["test_accuracy"]) for record in map(json.loads, stream)]
            results[name].append(np.load(os.path.join(path, "cycle_2", "labeled.npy")).tolist())
        assert results["stopped"] == results["uninterrupted"]


def test_a_full_disk_in_a_tensorflow_write_is_one_line():
    error = tf.errors.ResourceExhaustedError(None, None, "/runs/x/checkpoints/ckpt-3_temp/part-00000-of-00001.data; "
                                             "No space left on device")
    message = main._disk_full_message(error)  # pylint: disable=protected-access
    assert message.startswith("no space left on device (/runs/x/checkpoints/ckpt-3_temp/"), message
    assert "run the same command again" in message and "\n" not in message
    assert main._disk_full_message(tf.errors.ResourceExhaustedError(None, None, "OOM when allocating")) is None
