"""The command line: a tiny end-to-end run, the TFDS path, and bad input (one line, exit code 2)."""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_RUN = ["--train_steps=2", "--batch_size=4", "--eval_batch_size=50", "--initial_labels=4", "--budget=2",
            "--cycles=1", "--width=0.02", "--latent_dim=4", "--noprogress"]


def run_main(*arguments, cwd=ROOT):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *arguments], capture_output=True,
                          text=True, cwd=cwd, env=environment, timeout=600, check=False)


def write_npz(path, train=30, test=10, **overrides):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (train, 28, 28, 1), dtype=np.uint8),
        "y_train": np.arange(train, dtype=np.int64) % 10,
        "x_test": rng.integers(0, 256, (test, 28, 28, 1), dtype=np.uint8),
        "y_test": np.arange(test, dtype=np.int64) % 10,
    }
    arrays.update(overrides)
    np.savez(path, **{name: value for name, value in arrays.items() if value is not None})
    return path


@pytest.fixture(name="workdir")
def fixture_workdir():
    with tempfile.TemporaryDirectory() as directory:
        yield directory


def test_tiny_end_to_end_run(workdir):
    data_file = write_npz(os.path.join(workdir, "tiny.npz"))
    output_dir = os.path.join(workdir, "run")
    result = run_main("--dataset=mnist", f"--data_file={data_file}", f"--output_dir={output_dir}", *TINY_RUN)
    assert result.returncode == 0, result.stderr
    with open(os.path.join(output_dir, "results.jsonl"), encoding="utf-8") as stream:
        records = [json.loads(line) for line in stream]
    assert [record["num_labeled"] for record in records] == [4, 6]
    assert all(0.0 <= record["test_accuracy"] <= 1.0 and record["seconds"] > 0 for record in records)
    selected = np.load(os.path.join(output_dir, "cycle_0", "selected.npy"), allow_pickle=False)
    assert selected.dtype == np.int64 and len(selected) == 2
    assert os.path.exists(os.path.join(output_dir, "flags.txt"))
    assert "test accuracy" in result.stdout
    assert os.path.isfile(os.path.join(output_dir, "model.keras"))
    for name in ("classifier", "sampler"):
        assert os.path.isfile(os.path.join(output_dir, "export", name, "1", "saved_model.pb"))


def _bad_cases(workdir):
    tiny = write_npz(os.path.join(workdir, "tiny.npz"))
    no_labels = write_npz(os.path.join(workdir, "no_labels.npz"), y_train=None)
    float_images = write_npz(os.path.join(workdir, "float.npz"), x_train=np.zeros((30, 28, 28, 1), np.float32))
    bad_rank = write_npz(os.path.join(workdir, "rank.npz"), x_train=np.zeros((30, 28, 28), np.uint8))
    bad_label = write_npz(os.path.join(workdir, "label.npz"), y_train=np.full(30, 12, np.int64))
    blocker = os.path.join(workdir, "a_file")
    with open(blocker, "w", encoding="utf-8") as stream:
        stream.write("x")
    run_dir = os.path.join(workdir, "out")
    return [
        (["--dataset=fashion_mnist"], "--dataset"),
        (["--dataset=mnist", f"--data_file={workdir}/missing.npz"], "--data_file"),
        (["--dataset=mnist", f"--data_file={no_labels}"], "y_train"),
        (["--dataset=mnist", f"--data_file={float_images}"], "x_train"),
        (["--dataset=mnist", f"--data_file={bad_rank}"], "x_train"),
        (["--dataset=mnist", f"--data_file={bad_label}"], "y_train"),
        ([f"--dataset={tiny}", "--budget=40"], "--budget"),
        ([f"--dataset={tiny}", "--budget=0"], "--budget"),
        ([f"--dataset={tiny}", "--train_steps=-1"], "--train_steps"),
        ([f"--dataset={tiny}", "--batch_size=abc"], "--batch_size"),
        ([f"--dataset={tiny}", f"--output_dir={blocker}/run"], "--output_dir"),
        ([f"--dataset={tiny}", f"--initial_indices={workdir}/none.npy"], "--initial_indices"),
        ([f"--dataset={tiny}", "--no_such_flag=1"], "no_such_flag"),
        ([f"--dataset={tiny}", "--method=margin"], "--method=margin: unknown method; choose one of aral, vaal"),
        ([f"--dataset={tiny}", "--method=bald", "--mc_passes=1"], "--mc_passes"),
    ], run_dir


def test_bad_input_gives_one_line_and_exit_code_2(workdir):
    cases, run_dir = _bad_cases(workdir)
    for arguments, culprit in cases:
        result = run_main(f"--output_dir={run_dir}", *TINY_RUN, *arguments)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (arguments, result.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: "), (arguments, result.stderr)
        assert culprit in lines[0], (arguments, lines[0])
        assert "Traceback" not in result.stderr
        assert not os.path.exists(os.path.join(run_dir, "results.jsonl"))


def test_existing_run_is_not_overwritten(workdir):
    tiny = write_npz(os.path.join(workdir, "tiny.npz"))
    run_dir = os.path.join(workdir, "run")
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "results.jsonl"), "w", encoding="utf-8") as stream:
        stream.write('{"cycle": 0}\n')
    result = run_main(f"--dataset={tiny}", f"--output_dir={run_dir}", *TINY_RUN)
    assert result.returncode == 2 and "--output_dir" in result.stderr
    with open(os.path.join(run_dir, "results.jsonl"), encoding="utf-8") as stream:
        assert stream.read() == '{"cycle": 0}\n'


def test_tfds_dataset_with_mock_data(workdir):
    """--dataset=mnist without --data_file reads TFDS (mocked: no download here)."""
    import main  # pylint: disable=import-outside-toplevel

    data_dir = os.path.join(workdir, "tfds")
    builder = tfds.builder("mnist", data_dir=data_dir)
    os.makedirs(builder.data_dir)
    builder.info.write_to_directory(builder.data_dir)
    output_dir = os.path.join(workdir, "run")
    with tfds.testing.mock_data(num_examples=24, data_dir=data_dir, policy=tfds.testing.MockPolicy.USE_FILES):
        main.parse_flags(["main.py", "--dataset=mnist", f"--data_dir={data_dir}", f"--output_dir={output_dir}",
                          "--noexport", *TINY_RUN])
        records = main.run()
    assert [record["num_labeled"] for record in records] == [4, 6]
    assert tf.io.gfile.exists(os.path.join(output_dir, "cycle_1", "labeled.npy"))
    assert tf.io.gfile.exists(os.path.join(output_dir, "model.keras"))
    assert not tf.io.gfile.exists(os.path.join(output_dir, "export"))


def test_same_seed_same_indices_across_processes(workdir):
    data_file = write_npz(os.path.join(workdir, "tiny.npz"))
    selections = []
    for name in ("first", "second"):
        output_dir = os.path.join(workdir, name)
        result = run_main("--dataset=mnist", f"--data_file={data_file}", f"--output_dir={output_dir}", "--seed=5",
                          "--noexport", *TINY_RUN)
        assert result.returncode == 0, result.stderr
        selections.append([np.load(os.path.join(output_dir, f"cycle_{cycle}", f"{kind}.npy"), allow_pickle=False)
                           for cycle, kind in ((0, "labeled"), (0, "selected"), (1, "labeled"))])
    for first, second in zip(*selections):
        np.testing.assert_array_equal(first, second)
