"""The comparison runner: pending runs, what goes to main.py, and the summary of tiny fake runs."""

import csv
import json
import os
import subprocess

import pytest

from benchmarks import compare
from tests.helpers import assert_usage_error, run_benchmark

pytestmark = pytest.mark.slow

TRAIN_STEPS = 100


def _write_run(output_dir, method, seed, accuracies, first=10, step=10, train_steps=TRAIN_STEPS):
    run_dir = os.path.join(output_dir, method, f"seed_{seed}")
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "results.jsonl"), "w", encoding="utf-8") as stream:
        for cycle, accuracy in enumerate(accuracies):
            stream.write(json.dumps({"cycle": cycle, "num_labeled": first + step * cycle,
                                     "test_accuracy": accuracy, "train_steps": train_steps}) + "\n")


@pytest.fixture(name="fake_runs")
def fixture_fake_runs(tmp_path):
    _write_run(tmp_path, "aral", 0, [0.5, 0.8, 0.9])
    _write_run(tmp_path, "aral", 1, [0.7, 0.9, 0.96])
    _write_run(tmp_path, "random", 0, [0.4, 0.6])        # unfinished: 2 of 3 cycles
    _write_run(tmp_path, "full", 0, [0.99], first=500, train_steps=3 * TRAIN_STEPS)   # as long as 3 cycles
    return str(tmp_path)


def test_summary_of_fake_runs(fake_runs):
    rows = compare.write_summary(fake_runs, ["aral", "random", "full"], cycles=2, train_steps=TRAIN_STEPS,
                                 targets=[0.8, 0.95], title="t")
    with open(os.path.join(fake_runs, "summary.csv"), encoding="utf-8") as stream:
        table = list(csv.DictReader(stream))
    assert [(row["method"], row["num_labeled"], row["seeds"]) for row in table] == [
        ("aral", "10", "2"), ("aral", "20", "2"), ("aral", "30", "2"), ("full", "500", "1")]
    assert table[0]["mean_accuracy"] == "0.6000" and table[0]["std_accuracy"] == "0.1414"   # std of 0.5, 0.7
    assert table[2]["mean_accuracy"] == "0.9300" and table[3]["std_accuracy"] == "0.0000"
    assert compare.labels_to_reach(rows, "aral", 0.8) == 20
    assert compare.labels_to_reach(rows, "aral", 0.95) is None
    with open(os.path.join(fake_runs, "summary.md"), encoding="utf-8") as stream:
        markdown = stream.read()
    assert "| 10 | 60.00 ± 14.14 (2) |" in markdown
    assert "`full` (every label, 500 images): 99.00 ± 0.00 (1)" in markdown
    assert "| aral | 20 | – |" in markdown
    assert "random" not in markdown
    with open(os.path.join(fake_runs, "accuracy_vs_labels.png"), "rb") as stream:
        assert stream.read(8) == b"\x89PNG\r\n\x1a\n"


def test_pending_runs_skip_finished_ones(fake_runs):
    assert compare.pending_runs(fake_runs, ["aral", "random", "full"], seeds=2, cycles=2,
                                train_steps=TRAIN_STEPS) == [("random", 0), ("random", 1), ("full", 1)]


def test_a_run_of_another_schedule_is_not_finished(fake_runs):
    """`full` of a shorter schedule (--cycles=1: 200 steps) holds its one record but is no upper bound of this one."""
    _write_run(fake_runs, "full", 1, [0.5], first=500, train_steps=2 * TRAIN_STEPS)
    _write_run(fake_runs, "random", 1, [0.4, 0.6, 0.7], train_steps=TRAIN_STEPS // 2)
    assert compare.pending_runs(fake_runs, ["random", "full"], seeds=2, cycles=2, train_steps=TRAIN_STEPS) == [
        ("random", 0), ("random", 1), ("full", 1)]
    rows = compare.summarize(fake_runs, ["random", "full"], cycles=2, train_steps=TRAIN_STEPS)
    assert [(row["method"], row["seeds"], row["mean_accuracy"]) for row in rows] == [("full", 1, 0.99)]
    assert compare.pending_runs(fake_runs, ["full"], seeds=2, cycles=1, train_steps=TRAIN_STEPS) == [("full", 0)]


def test_passthrough_keeps_mains_flags_only():
    argv = ["--dataset=mnist", "--methods=aral,bald", "--seeds=3", "--output_dir=out", "--train_steps=200",
            "--seed=4", "--method=vaal", "--noprogress", "--targets=0.9", "--mc_passes=5"]
    assert compare.passthrough_arguments(argv) == ["--dataset=mnist", "--train_steps=200", "--mc_passes=5"]


def test_bad_methods_give_one_line_and_exit_code_2(tmp_path):
    for argument, culprit in (("--methods=aral,margin", "--methods=aral,margin: unknown method 'margin'"),
                              ("--targets=90", "--targets=90")):
        result = run_benchmark("benchmarks.compare", argument, f"--output_dir={tmp_path}")
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {culprit}"), result.stderr
    assert not os.listdir(tmp_path)


def test_an_output_dir_that_cannot_be_made_gives_one_line_and_exit_code_2(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    output_dir = blocker / "comparison"
    result = run_benchmark("benchmarks.compare", "--methods=random", "--seeds=1", f"--output_dir={output_dir}")
    assert_usage_error(result, f"--output_dir={output_dir}: not writable", output_dir)


def test_a_malformed_results_file_gives_one_line_and_exit_code_2(fake_runs):
    path = os.path.join(fake_runs, "aral", "seed_1", "results.jsonl")
    with open(path, "a", encoding="utf-8") as stream:
        stream.write("{not json\n")
    with open(path, "rb") as stream:
        before = stream.read()
    result = run_benchmark("benchmarks.compare", "--methods=aral", "--seeds=2", "--cycles=2",
                           f"--train_steps={TRAIN_STEPS}", "--norun",
                           f"--output_dir={fake_runs}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: line 4 is not JSON; "), result.stderr
    with open(path, "rb") as stream:
        assert stream.read() == before
    assert not os.path.exists(os.path.join(fake_runs, "summary.md"))


def test_summary_reads_only_seed_directories(fake_runs):
    aside = os.path.join(fake_runs, "aral", "seed_1.incomplete-20261127-110233")
    os.makedirs(aside)
    with open(os.path.join(aside, "results.jsonl"), "w", encoding="utf-8") as stream:
        stream.write("not a run's file\n")
    rows = compare.summarize(fake_runs, ["aral"], cycles=2, train_steps=TRAIN_STEPS)
    assert [(row["method"], row["num_labeled"], row["seeds"]) for row in rows] == [
        ("aral", 10, 2), ("aral", 20, 2), ("aral", 30, 2)]


def test_an_unfinished_run_resumes_in_place(fake_runs, monkeypatch):
    calls = []

    def fake_run(command, stdout, **kwargs):  # pylint: disable=unused-argument
        calls.append(command)
        stdout.write("second sitting\n")
        return subprocess.CompletedProcess(command, 0)

    run_dir = os.path.join(fake_runs, "random", "seed_0")
    with open(f"{run_dir}.log", "w", encoding="utf-8") as stream:
        stream.write("first sitting\n")
    messages = []
    monkeypatch.setattr(compare.subprocess, "run", fake_run)
    assert compare.run_one(fake_runs, "random", 0, ["--cycles=2"], log=messages.append) == 0
    assert sorted(os.listdir(os.path.join(fake_runs, "random"))) == ["seed_0", "seed_0.log"]
    assert len(compare.read_records(run_dir)) == 2                 # the finished cycles are kept
    assert calls[0][-5:] == ["--cycles=2", "--method=random", "--seed=0", f"--output_dir={run_dir}", "--noprogress"]
    assert messages[0].endswith("random seed 0: resuming after 2 finished cycles")
    with open(f"{run_dir}.log", encoding="utf-8") as stream:
        assert stream.read() == "first sitting\nsecond sitting\n"
