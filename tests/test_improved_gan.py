"""benchmarks.improved_gan: the reference game runs, the balanced draw, and one-line errors for bad flags."""

import json

import numpy as np
import pytest

from benchmarks.reference_game import draw_labeled
from tests.helpers import assert_usage_error, run_benchmark
from tests.test_main import write_npz

pytestmark = pytest.mark.slow


def run_game(*arguments):
    return run_benchmark("benchmarks.improved_gan", *arguments)


def test_balanced_draw_takes_the_same_count_of_each_class():
    labels = np.array([0, 1, 2] * 5 + [2] * 10)
    chosen = draw_labeled(labels, 6, "balanced", seed=3, num_classes=3)
    assert np.bincount(labels[chosen], minlength=3).tolist() == [2, 2, 2]
    assert len(set(chosen.tolist())) == 6
    assert chosen.tolist() == draw_labeled(labels, 6, "balanced", seed=3, num_classes=3).tolist()


def test_balanced_draw_rejects_counts_the_classes_cannot_supply():
    labels = np.array([0, 0, 0, 1])
    with pytest.raises(ValueError, match="multiple of the 2 classes"):
        draw_labeled(labels, 3, "balanced", seed=0, num_classes=2)
    with pytest.raises(ValueError, match="fewer than 2"):
        draw_labeled(labels, 4, "balanced", seed=0, num_classes=2)


def test_uniform_draw_is_the_one_main_py_uses():
    labels = np.arange(50) % 10
    chosen = draw_labeled(labels, 7, "uniform", seed=4, num_classes=10)
    assert chosen.tolist() == sorted(np.random.default_rng(4).choice(50, 7, replace=False).tolist())


@pytest.mark.parametrize("arguments", [
    [],
    ["--generator=aral", "--discriminator_weighting=aral", "--generated_cls=0.3", "--class_feature_matching=1",
     "--generator_gan=0.1"],
])
def test_tiny_game_writes_one_line_per_evaluation(tmp_path, arguments):
    data_file = write_npz(str(tmp_path / "tiny.npz"), train=40)
    output = tmp_path / "game.jsonl"
    result = run_game(f"--data_file={data_file}", "--labels=10", "--label_draw=balanced", "--steps=2", "--every=1",
                      "--batch_size=4", f"--output={output}", *arguments)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [record["step"] for record in records] == [1, 2]
    for record in records:
        assert 0.0 <= record["test_accuracy_last_weights"] <= 1.0
        assert 0.0 <= record["test_accuracy_averaged"] <= 1.0
        assert np.isfinite([record["labeled_cross_entropy"], record["real_fake"], record["generator_loss"]]).all()


@pytest.mark.parametrize("arguments, culprit", [
    (["--generated_cls=0.5"], "--generated_cls=0.5: needs --generator=aral"),
    (["--label_draw=balanced", "--labels=15"], "--labels=15: a balanced draw needs a multiple"),
    (["--average=1"], "--average=1.0"),
    (["--steps=10", "--every=20"], "--every=20"),
    (["--lr_generator=0"], "--lr_generator=0.0"),
    (["--labels=30"], "--labels=30"),
    (["--data_file=/no/such/file.npz"], "--data_file=/no/such/file.npz"),
    (["--output=/no/such/directory/out.jsonl"], "--output=/no/such/directory/out.jsonl"),
])
def test_bad_flags_give_one_line_and_exit_code_2(tmp_path, arguments, culprit):
    data_file = write_npz(str(tmp_path / "tiny.npz"))
    output = tmp_path / "game.jsonl"
    result = run_game(f"--data_file={data_file}", f"--output={output}", *arguments)
    assert_usage_error(result, culprit, output)
