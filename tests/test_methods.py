"""Every method in the loop: no labeled index, no pool labels; baselines under a two-replica strategy."""

import inspect
import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from aral_tf import loop, methods, oracle, pretrain
from aral_tf.data import ImageData
from aral_tf.distribution import make_strategy
from aral_tf.losses import LossWeights
from aral_tf.model import OptimizerConfig
from aral_tf.run_state import RunDirectory
from tests.helpers import tiny_config, tiny_images, two_cpu_strategy

INITIAL = np.array([5, 1, 30, 12])


def test_registry_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown method 'margin'; choose one of aral, vaal"):
        methods.build_method("margin", tiny_config(), LossWeights(), OptimizerConfig(), make_strategy(), seed=0)


def test_selection_takes_no_labels():
    assert not {"labels", "y", "y_train", "pool_labels"} & set(inspect.signature(methods.Method.select).parameters)


def test_a_selection_the_learner_cannot_feed_is_refused():
    with pytest.raises(ValueError, match="selection 'class_balanced' reads score, logits, which the learner of "
                                         "'random' does not give"):
        methods.build_method("random", tiny_config(), LossWeights(), OptimizerConfig(), make_strategy(), seed=0,
                             selection="class_balanced")


def _data(labels):
    return ImageData(x_train=tiny_images(40), y_train=labels.astype(np.int64), x_test=tiny_images(9, seed=1),
                     y_test=(np.arange(9) % 3).astype(np.int64), num_classes=3, class_names=None)


def _run(name, labels, output_dir, strategy=None, noise=0.3, selection=None, initial=INITIAL, saved="selected"):
    keras.utils.set_random_seed(0)
    method = methods.build_method(name, tiny_config(noise=noise), LossWeights(), OptimizerConfig(),
                                  strategy or make_strategy(), seed=0, mc_passes=3, selection=selection)
    config = loop.LoopConfig(budget=3, cycles=1, train_steps=2, batch_size=4, seed=0, output_dir=output_dir,
                             eval_batch_size=7, verbose=False)
    if initial is None:
        data = _data(labels)
        initial = pretrain.InitialSelection(method.learner, False, None, data.x_train, len(INITIAL), 0, 4,
                                            make_strategy(), log=lambda message: None)
    loop.run_active_learning(method, None, _data(labels), initial, oracle.SimulatedOracle(labels), config,
                             log=lambda message: None)
    return np.load(os.path.join(output_dir, "cycle_0", f"{saved}.npy"), allow_pickle=False)


def _permuted(labels):
    permuted = labels.copy()
    unlabeled = np.setdiff1d(np.arange(40), INITIAL)
    permuted[unlabeled] = np.random.default_rng(7).permutation(labels[unlabeled])
    return permuted


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name in methods.METHODS if name not in ("aral", methods.FULL)])
def test_method_selects_unlabeled_indices_blind_to_pool_labels(name):
    labels = np.arange(40) % 3
    with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
        selected = _run(name, labels, first)
        assert selected.dtype == np.int64 and len(np.unique(selected)) == 3
        assert not np.intersect1d(selected, INITIAL).size
        np.testing.assert_array_equal(selected, _run(name, _permuted(labels), second))


@pytest.mark.slow
@pytest.mark.parametrize("selection", ["typiclust", "lowest_in_clusters"])
def test_aral_selection_is_blind_to_pool_labels(selection):
    labels = np.arange(40) % 3
    with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
        selected = _run("aral", labels, first, selection=selection)
        assert len(np.unique(selected)) == 3 and not np.intersect1d(selected, INITIAL).size
        np.testing.assert_array_equal(selected, _run("aral", _permuted(labels), second, selection=selection))


@pytest.mark.slow
def test_the_typiclust_initial_set_is_blind_to_pool_labels():
    labels = np.arange(40) % 3
    # Every label may change here: no index is labeled before the initial set is chosen.
    shuffled = np.random.default_rng(7).permutation(labels)
    with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
        initial = _run("aral", labels, first, initial=None, saved="labeled")
        assert len(np.unique(initial)) == len(INITIAL)
        np.testing.assert_array_equal(initial, _run("aral", shuffled, second, initial=None, saved="labeled"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vaal", "coreset"])
def test_baseline_under_two_replicas_matches_one_device(name):
    """Training, evaluation and selection of a baseline run through the strategy (no noise: same draws)."""
    labels = np.arange(40) % 3
    with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
        selected = _run(name, labels, first, noise=0.0)
        np.testing.assert_array_equal(_run(name, labels, second, two_cpu_strategy(), noise=0.0), selected)
        records = [RunDirectory(directory).read_results() for directory in (first, second)]
    for one, other in zip(*records):
        assert one["test_accuracy"] == other["test_accuracy"]
        assert one["losses"] == pytest.approx(other["losses"], rel=1e-4, abs=1e-5)


def test_full_trains_once_on_every_label():
    labels = np.arange(40) % 3
    with tempfile.TemporaryDirectory() as output_dir:
        keras.utils.set_random_seed(0)
        method = methods.build_method(methods.FULL, tiny_config(), LossWeights(), OptimizerConfig(),
                                      make_strategy(), seed=0)
        config = loop.LoopConfig(budget=1, cycles=0, train_steps=2, batch_size=4, seed=0, output_dir=output_dir,
                                 eval_batch_size=7, verbose=False)
        records = loop.run_active_learning(method, None, _data(labels), np.arange(40), oracle.SimulatedOracle(labels),
                                           config, log=lambda message: None)
    assert [record["num_labeled"] for record in records] == [40]
    assert method.streams_per_step == 1 and method.aral_model is None


def test_aral_method_keeps_arals_throughput_count():
    method = methods.build_method("aral_random", tiny_config(), LossWeights(), OptimizerConfig(), make_strategy(),
                                  seed=0)
    assert method.streams_per_step == 3 and method.aral_model is method.learner
    tf.debugging.assert_equal(method.classify(tiny_images(2)).shape, (2, 3))
