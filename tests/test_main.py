"""The command line: a tiny end-to-end run, re-running it, the file oracle, the TFDS path, multi-worker.

Bad input (one line, exit code 2, run directory intact) is tested in test_bad_inputs.py.
"""

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

pytestmark = pytest.mark.slow

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
    for name in ("flags.txt", "run.json", "checkpoints/checkpoint", "cycle_1/labels.npy"):
        assert os.path.exists(os.path.join(output_dir, name)), name
    with open(os.path.join(output_dir, "accuracy_vs_labels.png"), "rb") as stream:
        assert stream.read(8) == b"\x89PNG\r\n\x1a\n"
    export_dir = os.path.join(output_dir, "export")
    assert result.stdout.splitlines()[-1] == (
        f"done: 6 labels, test accuracy {records[-1]['test_accuracy']:.4f}; classifier "
        f"{export_dir}/classifier/1, sampler {export_dir}/sampler/1")
    assert os.path.isfile(os.path.join(output_dir, "model.keras"))
    for name in ("classifier", "sampler"):
        assert os.path.isfile(os.path.join(output_dir, "export", name, "1", "saved_model.pb"))

    # A process stopped after the last cycle but before saving: the same command saves the model.
    os.remove(os.path.join(output_dir, "model.keras"))
    for expected in (f"; model {output_dir}/model.keras (no SavedModels: --noexport)\n",
                     "has finished all 2 cycles"):
        again = run_main("--dataset=mnist", f"--data_file={data_file}", f"--output_dir={output_dir}", *TINY_RUN,
                         "--noexport")
        assert again.returncode == 0 and expected in again.stdout, again.stdout + again.stderr
    assert os.path.isfile(os.path.join(output_dir, "model.keras"))
    with open(os.path.join(output_dir, "results.jsonl"), encoding="utf-8") as stream:
        assert [json.loads(line) for line in stream] == records


def test_main_imports_without_matplotlib():
    """The plot's matplotlib is imported when a cycle's plot is drawn, not with the command."""
    check = "import sys; sys.modules['matplotlib'] = None; import main, aral_tf.plots"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=ROOT,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=600, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.usefixtures("fresh_flags")
def test_files_oracle_writes_queries_then_continues_with_the_labels(workdir, capsys):
    import main  # pylint: disable=import-outside-toplevel

    data_file = write_npz(os.path.join(workdir, "tiny.npz"))
    output_dir = os.path.join(workdir, "run")
    arguments = ["main.py", "--dataset=mnist", f"--data_file={data_file}", f"--output_dir={output_dir}", *TINY_RUN,
                 "--oracle=files"]
    main.main(main.parse_flags(arguments))
    initial_dir = os.path.join(output_dir, "queries", "initial")
    assert f"Waiting for labels: 4 images to label in {initial_dir}" in capsys.readouterr().out
    with open(os.path.join(initial_dir, "queries.csv"), encoding="utf-8") as stream:
        rows = [line.split(",") for line in stream.read().splitlines()]
    assert rows[0] == ["pool_index", "file"] and len(rows) == 5
    assert all(os.path.exists(os.path.join(initial_dir, name)) for _, name in rows[1:])
    answers = {int(index): (int(index) + 1) % 10 for index, _ in rows[1:]}
    with open(os.path.join(initial_dir, "labels.csv"), "w", encoding="utf-8") as stream:
        stream.write("pool_index,label\n" + "".join(f"{index},{label}\n" for index, label in answers.items()))

    main.main(main.parse_flags(arguments))
    assert "queries/cycle_0 (queries.csv" in capsys.readouterr().out
    with open(os.path.join(output_dir, "results.jsonl"), encoding="utf-8") as stream:
        assert [json.loads(line)["num_labeled"] for line in stream] == [4]
    labeled = np.load(os.path.join(output_dir, "cycle_0", "labeled.npy"), allow_pickle=False)
    labels = np.load(os.path.join(output_dir, "cycle_0", "labels.npy"), allow_pickle=False)
    assert {int(index): int(label) for index, label in zip(labeled, labels)} == answers
    assert len(os.listdir(os.path.join(output_dir, "queries", "cycle_0"))) == 3


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


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def read_run(output_dir):
    """The records of a finished run and the selection after each cycle but the last."""
    with open(os.path.join(output_dir, "results.jsonl"), encoding="utf-8") as stream:
        records = [json.loads(line) for line in stream]
    selected = [np.load(os.path.join(output_dir, f"cycle_{cycle}", "selected.npy"), allow_pickle=False)
                for cycle in range(len(records) - 1)]
    return records, selected


def start_workers(*per_worker_arguments):
    """main.py as the workers of a local TF_CONFIG cluster, one process each (worker 0 is the chief)."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(len(per_worker_arguments))]}
    processes = []
    for index, arguments in enumerate(per_worker_arguments):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_CONFIG=tf_config)
        processes.append(subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "main.py"), *arguments, "--strategy=multi_worker"],
            cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return processes


def finish(processes):
    """(exit code, stdout, stderr) of each process."""
    try:
        outputs = [process.communicate(timeout=420) for process in processes]
    finally:
        for process in processes:
            process.kill()
    return [(process.returncode, stdout, stderr) for process, (stdout, stderr) in zip(processes, outputs)]


def run_beside_one_process(per_worker_arguments, single_arguments):
    """Runs the workers and, meanwhile, the same run in one process (--strategy=default); all must succeed.

    Returns the workers' stdout.
    """
    workers = start_workers(*per_worker_arguments)
    single = run_main(*single_arguments, "--strategy=default")
    assert single.returncode == 0, single.stderr
    outputs = []
    for code, stdout, stderr in finish(workers):
        assert code == 0, stderr
        outputs.append(stdout)
    return outputs


def assert_same_records(output_dir, expected_dir):
    (records, selected), (expected_records, expected_selected) = read_run(output_dir), read_run(expected_dir)
    assert len(selected) == len(expected_selected)
    for one, other in zip(selected, expected_selected):
        np.testing.assert_array_equal(one, other)
    assert [record["test_accuracy"] for record in records] == [r["test_accuracy"] for r in expected_records]
    for record, expected in zip(records, expected_records):
        for name, value in expected["losses"].items():
            assert record["losses"][name] == pytest.approx(value, rel=1e-4, abs=1e-5), name


def test_two_workers_match_one_process_and_only_the_chief_writes(workdir):
    """Two local workers (TF_CONFIG, 2 replicas) against one process with the same global batch of 4.

    Then the run is continued for one more cycle: refused (both workers, one line, exit code 2) while
    worker 1 cannot see the chief's directory, and matching the continued one-process run once it can.
    """
    rng = np.random.default_rng(3)
    data_file = write_npz(os.path.join(workdir, "tiny.npz"), y_train=np.arange(64) % 3, y_test=np.arange(16) % 3,
                          x_train=rng.integers(0, 256, (64, 8, 8, 1), np.uint8),
                          x_test=rng.integers(0, 256, (16, 8, 8, 1), np.uint8))
    # D's noise layers draw per replica, so they are off for an exact comparison.
    arguments = [f"--dataset={data_file}", "--train_steps=3", "--batch_size=4", "--eval_batch_size=10",
                 "--initial_labels=4", "--budget=2", "--cycles=1", "--width=0.02", "--latent_dim=4",
                 "--input_noise_std=0", "--hidden_noise_std=0", "--dropout_rate=0", "--noprogress"]
    chief_dir, single_dir = f"{workdir}/worker0", f"{workdir}/single"
    outputs = run_beside_one_process([[*arguments, f"--output_dir={workdir}/worker{index}",
                                       f"--tensorboard_dir={workdir}/tensorboard{index}"] for index in range(2)],
                                     [*arguments, f"--output_dir={single_dir}"])
    assert all("2 replica(s)" in stdout for stdout in outputs)
    assert_same_records(chief_dir, single_dir)
    assert os.path.isfile(f"{chief_dir}/model.keras") and os.path.isdir(f"{chief_dir}/export")
    assert os.listdir(f"{workdir}/tensorboard0")
    assert not os.path.exists(f"{workdir}/worker1") and not os.path.exists(f"{workdir}/tensorboard1")

    more = [*arguments, "--cycles=2"]
    chief_files = sorted(os.listdir(chief_dir))
    refused = finish(start_workers([*more, f"--output_dir={chief_dir}"],
                                   [*more, f"--output_dir={workdir}/worker1"]))
    for code, _, stderr in refused:
        assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
        assert "find different run states" in stderr and "--output_dir=" in stderr, stderr
    assert sorted(os.listdir(chief_dir)) == chief_files and len(read_run(chief_dir)[0]) == 2

    outputs = run_beside_one_process([[*more, f"--output_dir={chief_dir}"]] * 2,
                                     [*more, f"--output_dir={single_dir}"])
    assert all("continuing at cycle 2" in stdout for stdout in outputs)
    assert_same_records(chief_dir, single_dir)
    assert not os.path.exists(f"{workdir}/worker1")
