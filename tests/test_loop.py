"""run_active_learning end to end on a tiny pool: files, determinism, and blindness to pool labels."""

import json
import os
import tempfile

import numpy as np
import keras
import tensorflow as tf

from aral_tf import loop
from aral_tf.data import ImageData
from aral_tf.model import ARALModel
from aral_tf.training import make_strategy
from tests.helpers import tiny_config, tiny_images


def tiny_data(labels=None):
    pool_labels = np.arange(40) % 3 if labels is None else labels
    return ImageData(x_train=tiny_images(40), y_train=pool_labels.astype(np.int64),
                     x_test=tiny_images(9, seed=1), y_test=(np.arange(9) % 3).astype(np.int64),
                     num_classes=3, class_names=None)


class RecordingCallbacks:
    def __init__(self):
        self.steps, self.cycles = [], []

    def on_train_step(self, step, losses):
        self.steps.append(step)
        assert "loss_discriminator" in losses

    def on_cycle_end(self, cycle, record, model):
        self.cycles.append((cycle, record["num_labeled"], model is not None))


def run(output_dir, data, seed=0, cycles=2, callbacks=None):
    keras.utils.set_random_seed(seed)
    model = ARALModel(tiny_config(noise=0.3))
    config = loop.LoopConfig(budget=3, cycles=cycles, train_steps=3, batch_size=4, seed=seed,
                             output_dir=str(output_dir), eval_batch_size=5, verbose=False)
    oracle = loop.SimulatedOracle(data.y_train)
    records = loop.run_active_learning(model, make_strategy("default"), data, np.array([5, 1, 30, 12]), oracle,
                                       config, log=lambda message: None, callbacks=callbacks)
    return records, oracle


def indices(output_dir, cycle, name):
    return np.load(os.path.join(output_dir, f"cycle_{cycle}", f"{name}.npy"), allow_pickle=False)


class RunActiveLearningTest(tf.test.TestCase):

    def test_writes_results_and_index_files(self):
        output_dir = self.enter_context(tempfile.TemporaryDirectory())
        records, oracle = run(output_dir, tiny_data())
        with open(os.path.join(output_dir, "results.jsonl"), encoding="utf-8") as stream:
            lines = [json.loads(line) for line in stream]
        self.assertEqual(lines, records)
        self.assertEqual([line["cycle"] for line in lines], [0, 1, 2])
        self.assertEqual([line["num_labeled"] for line in lines], [4, 7, 10])
        for line in lines:
            self.assertContainsSubset({"cycle", "num_labeled", "test_accuracy", "seconds"}, line)
            self.assertBetween(line["test_accuracy"], 0.0, 1.0)
        self.assertAllEqual(indices(output_dir, 0, "labeled"), [1, 5, 12, 30])
        for cycle in (0, 1):
            labeled, selected = indices(output_dir, cycle, "labeled"), indices(output_dir, cycle, "selected")
            self.assertEqual(selected.dtype, np.int64)
            self.assertLen(selected, 3)
            self.assertEmpty(np.intersect1d(labeled, selected))
            self.assertAllEqual(indices(output_dir, cycle + 1, "labeled"), np.sort(np.concatenate([labeled, selected])))
        self.assertFalse(os.path.exists(os.path.join(output_dir, "cycle_2", "selected.npy")))
        self.assertEqual(oracle.queried, 10)

    def test_callbacks_hear_steps_across_cycles_and_each_cycle_end(self):
        callbacks = RecordingCallbacks()
        run(self.enter_context(tempfile.TemporaryDirectory()), tiny_data(), cycles=1, callbacks=callbacks)
        self.assertEqual(callbacks.steps, [1, 2, 3, 4, 5, 6])
        self.assertEqual(callbacks.cycles, [(0, 4, True), (1, 7, True)])

    def test_same_seed_same_indices(self):
        first, second = self.enter_context(tempfile.TemporaryDirectory()), self.enter_context(tempfile.TemporaryDirectory())
        run(first, tiny_data())
        run(second, tiny_data())
        for cycle in (0, 1):
            self.assertAllEqual(indices(first, cycle, "selected"), indices(second, cycle, "selected"))

    def test_selection_ignores_labels_of_unlabeled_pool(self):
        labels = np.arange(40) % 3
        permuted = labels.copy()
        unlabeled = np.setdiff1d(np.arange(40), [5, 1, 30, 12])
        permuted[unlabeled] = np.random.default_rng(7).permutation(labels[unlabeled])
        self.assertFalse(np.array_equal(labels, permuted))
        first, second = self.enter_context(tempfile.TemporaryDirectory()), self.enter_context(tempfile.TemporaryDirectory())
        run(first, tiny_data(labels), cycles=1)
        run(second, tiny_data(permuted), cycles=1)
        self.assertAllEqual(indices(first, 0, "selected"), indices(second, 0, "selected"))


class AtomicWriteTest(tf.test.TestCase):

    def test_append_result_keeps_earlier_lines(self):
        path = os.path.join(self.enter_context(tempfile.TemporaryDirectory()), "results.jsonl")
        loop.append_result(path, {"cycle": 0})
        loop.append_result(path, {"cycle": 1})
        with open(path, encoding="utf-8") as stream:
            self.assertEqual([json.loads(line)["cycle"] for line in stream], [0, 1])
        self.assertEqual([name for name in os.listdir(os.path.dirname(path)) if name.startswith(".tmp")], [])


if __name__ == "__main__":
    tf.test.main()
