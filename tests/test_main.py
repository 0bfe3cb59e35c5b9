"""The command line: a tiny end-to-end run, the TFDS path, bad input (one line, exit code 2), multi-worker."""

import json
import os
import socket
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


def run_main(*arguments, cwd=ROOT, env=None):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
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
        ([f"--dataset={tiny}", f"--tensorboard_dir={blocker}/tb"], "--tensorboard_dir"),
        ([f"--dataset={tiny}", "--strategy=tpu"], "--tpu"),
        ([f"--dataset={tiny}", "--strategy=tpu", "--tpu=local"], "--tpu=local"),
        ([f"--dataset={tiny}", "--mixed_precision"], "--mixed_precision"),
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


def test_malformed_tf_config_gives_one_line_and_exit_code_2(workdir):
    tiny = write_npz(os.path.join(workdir, "tiny.npz"))
    result = run_main(f"--dataset={tiny}", f"--output_dir={workdir}/run", "--strategy=multi_worker", *TINY_RUN,
                      env={"TF_CONFIG": '{"cluster": {"worker": ["127.0.0.1:1"]}'})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "TF_CONFIG" in result.stderr and "--strategy=multi_worker" in result.stderr


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
                          *TINY_RUN])
        records = main.run()
    assert [record["num_labeled"] for record in records] == [4, 6]
    assert tf.io.gfile.exists(os.path.join(output_dir, "cycle_1", "labeled.npy"))


def test_same_seed_same_indices_across_processes(workdir):
    data_file = write_npz(os.path.join(workdir, "tiny.npz"))
    selections = []
    for name in ("first", "second"):
        output_dir = os.path.join(workdir, name)
        result = run_main("--dataset=mnist", f"--data_file={data_file}", f"--output_dir={output_dir}", "--seed=5",
                          *TINY_RUN)
        assert result.returncode == 0, result.stderr
        selections.append([np.load(os.path.join(output_dir, f"cycle_{cycle}", f"{kind}.npy"), allow_pickle=False)
                           for cycle, kind in ((0, "labeled"), (0, "selected"), (1, "labeled"))])
    for first, second in zip(*selections):
        np.testing.assert_array_equal(first, second)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def read_run(output_dir):
    with open(os.path.join(output_dir, "results.jsonl"), encoding="utf-8") as stream:
        records = [json.loads(line) for line in stream]
    selected = np.load(os.path.join(output_dir, "cycle_0", "selected.npy"), allow_pickle=False)
    return records, selected


def test_two_workers_match_one_process_and_only_the_chief_writes(workdir):
    """Two local workers (TF_CONFIG, 2 replicas) against one process with the same global batch of 4."""
    rng = np.random.default_rng(3)
    data_file = write_npz(os.path.join(workdir, "tiny.npz"), y_train=np.arange(64) % 3, y_test=np.arange(16) % 3,
                          x_train=rng.integers(0, 256, (64, 8, 8, 1), np.uint8),
                          x_test=rng.integers(0, 256, (16, 8, 8, 1), np.uint8))
    # D's noise layers draw per replica, so they are off for an exact comparison.
    arguments = [f"--dataset={data_file}", "--train_steps=3", "--batch_size=4", "--eval_batch_size=10",
                 "--initial_labels=4", "--budget=2", "--cycles=1", "--width=0.02", "--latent_dim=4",
                 "--input_noise_std=0", "--hidden_noise_std=0", "--dropout_rate=0", "--noprogress"]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_CONFIG=tf_config)
        processes.append(subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "main.py"), *arguments, "--strategy=multi_worker",
             f"--output_dir={workdir}/worker{index}", f"--tensorboard_dir={workdir}/tensorboard{index}"],
            cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    single = run_main(*arguments, "--strategy=default", f"--output_dir={workdir}/single")
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=420))
    finally:
        for process in processes:
            process.kill()
    assert single.returncode == 0, single.stderr
    for process, (stdout, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr
        assert "2 replica(s)" in stdout

    records, selected = read_run(f"{workdir}/worker0")
    expected_records, expected_selected = read_run(f"{workdir}/single")
    np.testing.assert_array_equal(selected, expected_selected)
    assert [record["test_accuracy"] for record in records] == [r["test_accuracy"] for r in expected_records]
    for record, expected in zip(records, expected_records):
        for name, value in expected["losses"].items():
            assert record["losses"][name] == pytest.approx(value, rel=1e-4, abs=1e-5), name
    assert os.listdir(f"{workdir}/tensorboard0")
    assert not os.path.exists(f"{workdir}/worker1") and not os.path.exists(f"{workdir}/tensorboard1")
