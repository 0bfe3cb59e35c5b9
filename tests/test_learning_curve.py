"""benchmarks.learning_curve: a tiny curve, and one-line errors for flags no training can use."""

import json

import pytest

from tests.helpers import assert_usage_error, run_benchmark
from tests.test_main import write_npz

pytestmark = pytest.mark.slow


def run_curve(*arguments):
    return run_benchmark("benchmarks.learning_curve", *arguments)


def test_tiny_curve_writes_one_line_per_evaluation(tmp_path):
    data_file = write_npz(str(tmp_path / "tiny.npz"))
    output = tmp_path / "curve.jsonl"
    result = run_curve(f"--data_file={data_file}", "--labels=5", "--steps=2", "--every=1", "--batch_size=4",
                       f"--output={output}")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [record["step"] for record in records] == [1, 2]
    for record in records:
        assert record["labels"] == 5
        assert 0.0 <= record["test_accuracy"] <= 1.0
        assert 0.0 <= record["test_accuracy_last_weights"] <= 1.0


@pytest.mark.parametrize("arguments, culprit", [
    (["--judge_epochs=-1"], "--judge_epochs=-1"),
    (["--steps=10", "--every=20"], "--every=20"),
    (["--lr_discriminator=0"], "--lr_discriminator=0.0"),
    (["--generated_cls=nan"], "--generated_cls=nan"),
    (["--data_file=/no/such/file.npz"], "--data_file=/no/such/file.npz"),
    (["--output=/no/such/directory/out.jsonl"], "--output=/no/such/directory/out.jsonl"),
    (["--labels=30"], "--labels=30"),
    (["--steps=abc"], "flag --steps=abc"),
])
def test_bad_flags_give_one_line_and_exit_code_2(tmp_path, arguments, culprit):
    data_file = write_npz(str(tmp_path / "tiny.npz"))
    output = tmp_path / "curve.jsonl"
    result = run_curve(f"--data_file={data_file}", f"--output={output}", *arguments)
    assert_usage_error(result, culprit, output)
