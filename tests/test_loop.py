"""run_active_learning end to end on a tiny pool: files, determinism, blindness to pool labels, and resuming."""

import json
import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from aral_tf import loop
from aral_tf.data import ImageData
from aral_tf.distribution import make_strategy
from aral_tf.model import ARALModel
from aral_tf.oracle import AwaitingLabels, FileOracle, SimulatedOracle
from aral_tf.run_state import RunCheckpoint, RunDirectory
from tests.helpers import tiny_config, tiny_images

pytestmark = pytest.mark.slow


def tiny_data(labels=None):
    pool_labels = np.arange(40) % 3 if labels is None else labels
    return ImageData(x_train=tiny_images(40), y_train=pool_labels.astype(np.int64),
                     x_test=tiny_images(9, seed=1), y_test=(np.arange(9) % 3).astype(np.int64),
                     num_classes=3, class_names=None)


class Interrupt(Exception):
    """Stands in for a crash at a chosen point of the loop."""


def interrupt_at(point):
    def on_event(kind, cycle, detail):
        if (kind, cycle, detail) == point:
            raise Interrupt(point)
    return on_event


class RecordingCallbacks:
    def __init__(self):
        self.steps, self.cycles = [], []

    def on_train_step(self, step, losses):
        self.steps.append(step)
        assert "loss_discriminator" in losses

    def on_cycle_end(self, cycle, record, model):
        self.cycles.append((cycle, record["num_labeled"], model is not None))


def run(output_dir, data, seed=0, cycles=2, oracle=None, on_event=None, callbacks=None, restart=(), restarts=None):
    """One tiny run; with `restarts` (a list), each call of the model's `restart` is appended to it."""
    keras.utils.set_random_seed(seed)
    model = ARALModel(tiny_config(noise=0.3))
    if restarts is not None:
        restart_model = model.restart
        model.restart = lambda networks: (restarts.append(tuple(networks)), restart_model(networks))
    config = loop.LoopConfig(budget=3, cycles=cycles, train_steps=3, batch_size=4, seed=seed,
                             output_dir=str(output_dir), eval_batch_size=5, verbose=False, checkpoint_every=2,
                             restart_each_cycle=restart)
    oracle = oracle or SimulatedOracle(data.y_train)
    records = loop.run_active_learning(model, make_strategy("default"), data, np.array([5, 1, 30, 12]), oracle,
                                       config, log=lambda message: None, on_event=on_event,
                                       callbacks=callbacks)
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
            self.assertAllEqual(indices(output_dir, cycle + 1, "labeled"),
                                np.sort(np.concatenate([labeled, selected])))
        self.assertFalse(os.path.exists(os.path.join(output_dir, "cycle_2", "selected.npy")))
        self.assertEqual(oracle.queried, 10)
        for cycle in (0, 1, 2):
            self.assertAllEqual(indices(output_dir, cycle, "labels"), indices(output_dir, cycle, "labeled") % 3)

    def test_callbacks_hear_steps_across_cycles_and_each_cycle_end(self):
        callbacks = RecordingCallbacks()
        run(self.enter_context(tempfile.TemporaryDirectory()), tiny_data(), cycles=1, callbacks=callbacks)
        self.assertEqual(callbacks.steps, [1, 2, 3, 4, 5, 6])
        self.assertEqual(callbacks.cycles, [(0, 4, True), (1, 7, True)])

    def test_same_seed_same_indices(self):
        first = self.enter_context(tempfile.TemporaryDirectory())
        second = self.enter_context(tempfile.TemporaryDirectory())
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
        first = self.enter_context(tempfile.TemporaryDirectory())
        second = self.enter_context(tempfile.TemporaryDirectory())
        run(first, tiny_data(labels), cycles=1)
        run(second, tiny_data(permuted), cycles=1)
        self.assertAllEqual(indices(first, 0, "selected"), indices(second, 0, "selected"))


def assert_same_run(test, first, second, cycles=2):
    """Same labeled sets, labels and selections; same accuracies and losses up to float tolerance."""
    for cycle in range(cycles + 1):
        for name in ("labeled", "labels") + (("selected",) if cycle < cycles else ()):
            test.assertAllEqual(indices(first, cycle, name), indices(second, cycle, name), msg=f"{cycle} {name}")
    first_records, second_records = RunDirectory(first).read_results(), RunDirectory(second).read_results()
    test.assertLen(second_records, cycles + 1)
    for one, other in zip(first_records, second_records):
        test.assertAllClose(one["test_accuracy"], other["test_accuracy"], atol=1e-6)
        test.assertAllClose(one["losses"], other["losses"], rtol=1e-5, atol=1e-6)


class ResumeTest(tf.test.TestCase):
    """A run stopped anywhere and run again ends as if it had never stopped."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.workspace = tempfile.TemporaryDirectory()  # pylint: disable=consider-using-with
        cls.reference = os.path.join(cls.workspace.name, "reference")
        run(cls.reference, tiny_data())

    @classmethod
    def tearDownClass(cls):
        cls.workspace.cleanup()
        super().tearDownClass()

    def test_interrupted_run_continues_to_the_same_result(self):
        output_dir = self.enter_context(tempfile.TemporaryDirectory())
        for point in (("step", 0, 3), ("file", 1, os.path.join("cycle_0", "selected.npy")), ("checkpoint", 1, 3)):
            with self.assertRaises(Interrupt):
                run(output_dir, tiny_data(), on_event=interrupt_at(point))
        records, _ = run(output_dir, tiny_data())
        self.assertEqual([record["cycle"] for record in records], [0, 1, 2])
        assert_same_run(self, self.reference, output_dir)

    def test_callbacks_of_a_resumed_run_go_on_counting_steps_across_cycles(self):
        output_dir = self.enter_context(tempfile.TemporaryDirectory())
        with self.assertRaises(Interrupt):
            run(output_dir, tiny_data(), on_event=interrupt_at(("checkpoint", 1, 2)))
        callbacks = RecordingCallbacks()
        run(output_dir, tiny_data(), callbacks=callbacks)
        self.assertEqual(callbacks.steps, [6, 7, 8, 9])
        self.assertEqual(callbacks.cycles, [(1, 7, True), (2, 10, True)])
        assert_same_run(self, self.reference, output_dir)

    def test_restarted_networks_restart_once_per_cycle_after_the_first_and_resume_alike(self):
        restart = ("discriminator", "generator")
        reference = self.enter_context(tempfile.TemporaryDirectory())
        restarts = []
        run(reference, tiny_data(), restart=restart, restarts=restarts)
        self.assertEqual(restarts, [restart, restart])
        output_dir = self.enter_context(tempfile.TemporaryDirectory())
        with self.assertRaises(Interrupt):
            run(output_dir, tiny_data(), restart=restart, on_event=interrupt_at(("checkpoint", 1, 2)))
        restarts = []
        run(output_dir, tiny_data(), restart=restart, restarts=restarts)
        self.assertEqual(restarts, [restart])  # Cycle 1 went on from its checkpoint; cycle 2 restarted.
        assert_same_run(self, reference, output_dir)
        warm = RunDirectory(self.reference).read_results()
        restarted = RunDirectory(reference).read_results()
        self.assertEqual(warm[0]["losses"], restarted[0]["losses"])
        self.assertNotEqual(warm[1]["losses"], restarted[1]["losses"])

    def test_more_cycles_extend_a_finished_run(self):
        output_dir = self.enter_context(tempfile.TemporaryDirectory())
        run(output_dir, tiny_data(), cycles=1)
        self.assertFalse(os.path.exists(os.path.join(output_dir, "cycle_1", "selected.npy")))
        run(output_dir, tiny_data(), cycles=2)
        assert_same_run(self, self.reference, output_dir)

    def test_file_oracle_given_the_true_labels_matches_the_simulated_run(self):
        output_dir = self.enter_context(tempfile.TemporaryDirectory())
        data = tiny_data()
        for round_name in ("initial", "cycle_0", "cycle_1"):
            oracle = FileOracle(data.x_train, os.path.join(output_dir, "queries"), data.num_classes)
            with self.assertRaisesRegex(AwaitingLabels, f"3|4 images to label in .*{round_name}"):
                run(output_dir, data, oracle=oracle)
            round_dir = os.path.join(output_dir, "queries", round_name)
            with open(os.path.join(round_dir, "queries.csv"), encoding="utf-8") as stream:
                queried = [int(line.split(",")[0]) for line in stream.read().splitlines()[1:]]
            with open(os.path.join(round_dir, "labels.csv"), "w", encoding="utf-8") as stream:
                stream.write("pool_index,label\n" + "".join(f"{index},{data.y_train[index]}\n"
                                                              for index in queried))
        queries_dir = os.path.join(output_dir, "queries")
        run(output_dir, data, oracle=FileOracle(data.x_train, queries_dir, data.num_classes))
        assert_same_run(self, self.reference, output_dir)

    def test_divergence_stops_the_cycle_and_keeps_the_last_good_checkpoint(self):
        output_dir = self.enter_context(tempfile.TemporaryDirectory())
        keras.utils.set_random_seed(0)
        model = ARALModel(tiny_config(noise=0.3))

        def poison(kind, cycle, detail):
            if (kind, cycle, detail) == ("step", 1, 3):
                bias = model.discriminator.classifier.bias
                bias.assign(np.full(bias.shape, np.nan, np.float32))

        config = loop.LoopConfig(budget=3, cycles=2, train_steps=5, batch_size=4, seed=0, output_dir=output_dir,
                                 eval_batch_size=5, verbose=False, checkpoint_every=2)
        data = tiny_data()
        with self.assertRaisesRegex(FloatingPointError, "cycle 1: .* at step 4; training diverged"):
            loop.run_active_learning(model, make_strategy("default"), data, np.array([5, 1, 30, 12]),
                                     SimulatedOracle(data.y_train), config, log=lambda message: None,
                                     on_event=poison)
        self.assertLen(RunDirectory(output_dir).read_results(), 1)
        fresh = ARALModel(tiny_config(noise=0.3))
        position = RunCheckpoint(fresh, os.path.join(output_dir, "checkpoints"),
                                 RunDirectory(output_dir).open_run()).restore_latest()
        self.assertEqual((position.cycle, position.step), (1, 2))
        self.assertTrue(all(np.all(np.isfinite(variable.numpy())) for variable in fresh.trainable_variables))


if __name__ == "__main__":
    tf.test.main()
