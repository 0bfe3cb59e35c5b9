"""Run directory files: atomic writes, run identity, lock, results, arrays and checkpoints."""

import dataclasses
import errno
import json
import os
import tempfile
from unittest import mock

import keras
import numpy as np
import tensorflow as tf

from aral_tf import run_state
from aral_tf.data import ImageData
from aral_tf.model import ARALModel
from tests.helpers import tiny_config, tiny_images


def every_variable(model):
    """Model variables (incl. Keras seed states) and the variables of the three optimizers."""
    optimizers = (model.encoder_generator_optimizer, model.discriminator_optimizer, model.sampler_optimizer)
    found = {}
    for variable in list(model.variables) + [v for optimizer in optimizers for v in optimizer.variables]:
        found[id(variable)] = variable
    return list(found.values())


def position(cycle=0, step=3):
    return run_state.TrainingPosition(cycle=cycle, step=step, stream_state={"any": [1, 2]},
                                      loss_sums={"loss_sampler": 1.5}, train_seconds=2.0)


class FilesTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        self.directory = self.enter_context(tempfile.TemporaryDirectory())
        self.run = run_state.RunDirectory(self.directory)

    def test_append_result_keeps_earlier_lines_and_no_temporary_file(self):
        path = os.path.join(self.directory, "results.jsonl")
        run_state.append_result(path, {"cycle": 0})
        run_state.append_result(path, {"cycle": 1})
        self.assertEqual([record["cycle"] for record in self.run.read_results()], [0, 1])
        self.assertEqual([name for name in os.listdir(self.directory) if name.startswith(".tmp")], [])

    def test_read_results_names_the_bad_line(self):
        with open(self.run.results_path, "w", encoding="utf-8") as stream:
            stream.write('{"cycle": 0}\n{"cycle": 1\n')
        with self.assertRaisesRegex(run_state.RunStateError, "results.jsonl: line 2 is not JSON"):
            self.run.read_results()
        with open(self.run.results_path, "w", encoding="utf-8") as stream:
            stream.write('{"cycle": 0}\n{"cycle": 2}\n')
        with self.assertRaisesRegex(run_state.RunStateError, "line 2 is not the record of cycle 1"):
            self.run.read_results()

    def test_arrays_round_trip_and_bad_ones_are_refused(self):
        self.assertEqual(self.run.save_array(2, "labeled.npy", [5, 3]), os.path.join("cycle_2", "labeled.npy"))
        self.assertAllEqual(self.run.load_array(2, "labeled.npy"), [5, 3])
        np.save(self.run.cycle_file(2, "labels.npy"), np.array([0.5]))
        with self.assertRaisesRegex(run_state.RunStateError, "labels.npy: not a rank-1 int64 array"):
            self.run.load_array(2, "labels.npy")
        np.save(self.run.cycle_file(2, "selected.npy"), np.array([{"a": 1}], dtype=object), allow_pickle=True)
        with self.assertRaisesRegex(run_state.RunStateError, "selected.npy: unreadable"):
            self.run.load_array(2, "selected.npy")

    def test_remove_temporaries_only_where_the_run_writes_them(self):
        for name in ("cycle_0", "queries/initial", "notes/sub", "cycle_1/deeper"):
            os.makedirs(os.path.join(self.directory, name))
        removed = (".tmp-abc", "cycle_0/.tmp-def", "queries/initial/.tmp-png")
        kept = ("cycle_0/labeled.npy", "notes/sub/.tmp-draft.txt", "cycle_1/deeper/.tmp-x", "notes/.tmp-y")
        for name in removed + kept:
            with open(os.path.join(self.directory, name), "w", encoding="utf-8") as stream:
                stream.write("x")
        self.run.remove_temporaries()
        for name in removed:
            self.assertFalse(os.path.exists(os.path.join(self.directory, name)), name)
        for name in kept:
            self.assertTrue(os.path.exists(os.path.join(self.directory, name)), name)

    def test_write_atomic_names_the_file_of_a_failed_write(self):
        path = os.path.join(self.directory, "results.jsonl")
        with mock.patch.object(os, "fsync", side_effect=OSError(errno.ENOSPC, "No space left on device")):
            with self.assertRaises(OSError) as caught:
                run_state.write_atomic(path, b"x")
        self.assertEqual((caught.exception.errno, caught.exception.filename), (errno.ENOSPC, path))
        self.assertEqual(os.listdir(self.directory), [])

    def test_lock_is_exclusive_and_released(self):
        with self.run.locked():
            with self.assertRaisesRegex(run_state.RunStateError, "another process is running this run"):
                with run_state.RunDirectory(self.directory).locked():
                    pass
        with self.run.locked():
            pass

    def test_newest_checkpoint_number_from_the_file_names(self):
        self.assertEqual(self.run.newest_checkpoint_number(), -1)
        os.makedirs(self.run.checkpoint_dir)
        for name in ("ckpt-2.index", "ckpt-10.index", "ckpt-11.data-00000-of-00001", "checkpoint",
                     "ckpt-x.index"):
            with open(os.path.join(self.run.checkpoint_dir, name), "w", encoding="utf-8"):
                pass
        self.assertEqual(self.run.newest_checkpoint_number(), 10)

    def test_holds_run_files(self):
        self.assertFalse(self.run.holds_run_files())
        os.makedirs(os.path.join(self.directory, "cycle_0"))
        self.assertTrue(self.run.holds_run_files())

    def test_holds_other_files_unless_a_run(self):
        self.assertFalse(run_state.RunDirectory(os.path.join(self.directory, "missing")).holds_other_files())
        with self.run.locked():
            self.assertFalse(self.run.holds_other_files())
        # What a process killed while writing run.json leaves.
        handle, _ = tempfile.mkstemp(dir=self.directory, prefix=run_state.TEMPORARY_PREFIX)
        os.close(handle)
        self.assertFalse(self.run.holds_other_files())
        with open(os.path.join(self.directory, ".tmp-notes.txt"), "w", encoding="utf-8"):
            pass
        self.assertTrue(self.run.holds_other_files())
        self.run.open_run({})
        self.assertFalse(self.run.holds_other_files())


class IdentityTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        self.run = run_state.RunDirectory(self.enter_context(tempfile.TemporaryDirectory()))

    def test_same_identity_same_run_id(self):
        run_id = self.run.open_run({"seed": 0, "shape": (8, 8, 1)})
        self.assertLen(run_id, 32)
        self.assertEqual(self.run.open_run({"seed": 0, "shape": (8, 8, 1)}), run_id)
        self.assertEqual(self.run.open_run(), run_id)

    def test_changed_value_is_refused(self):
        self.run.open_run({"seed": 0, "budget": 10})
        with self.assertRaises(run_state.IdentityMismatch) as caught:
            self.run.open_run({"seed": 0, "budget": 20})
        self.assertEqual((caught.exception.key, caught.exception.started, caught.exception.given),
                         ("budget", 10, 20))

    def test_keys_the_run_did_not_store_are_accepted(self):
        run_id = self.run.open_run({"seed": 0})
        self.assertEqual(self.run.open_run({"seed": 0, "new_flag": 3}), run_id)

    def test_unreadable_run_file(self):
        with open(self.run.run_path, "w", encoding="utf-8") as stream:
            stream.write("{not json")
        with self.assertRaisesRegex(run_state.RunStateError, "run.json: unreadable"):
            self.run.open_run()
        with open(self.run.run_path, "w", encoding="utf-8") as stream:
            json.dump({"format": 99, "run_id": "x", "identity": {}}, stream)
        with self.assertRaisesRegex(run_state.RunStateError, "not a run file of this version"):
            self.run.open_run()

    def test_data_fingerprint_sees_one_changed_pixel(self):
        images = tiny_images(6)
        data = ImageData(images, np.zeros(6, np.int64), images, np.zeros(6, np.int64), 3, None)
        changed_images = images.copy()
        changed_images[4, 2, 2, 0] ^= 1
        changed = ImageData(changed_images, np.zeros(6, np.int64), images, np.zeros(6, np.int64), 3, None)
        self.assertEqual(run_state.data_fingerprint(data)["image_shape"], [8, 8, 1])
        self.assertNotEqual(run_state.data_fingerprint(data), run_state.data_fingerprint(changed))

    def test_data_fingerprint_covers_every_array_and_the_class_names(self):
        images, labels = tiny_images(6), np.zeros(6, np.int64)
        fingerprint = run_state.data_fingerprint(ImageData(images, labels, images, labels, 3, None))
        changed_labels = labels.copy()
        changed_labels[1] = 2
        for other in (ImageData(images, changed_labels, images, labels, 3, None),
                      ImageData(images, labels, tiny_images(6, seed=1), labels, 3, None),
                      ImageData(images, labels, images, changed_labels, 3, None),
                      ImageData(images, labels, images, labels, 3, ("a", "b", "c"))):
            self.assertNotEqual(run_state.data_fingerprint(other), fingerprint)


class RunCheckpointTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        self.directory = self.enter_context(tempfile.TemporaryDirectory())
        keras.utils.set_random_seed(0)
        self.model = ARALModel(tiny_config(noise=0.3))
        rng = np.random.default_rng(0)
        for variable in every_variable(self.model):
            variable.assign(rng.integers(1, 100, variable.shape).astype(variable.dtype))

    def test_saving_logs_nothing_below_warning(self):
        with self.assertNoLogs("absl", "INFO"), self.assertNoLogs("tensorflow", "INFO"):
            run_state.RunCheckpoint(self.model, self.directory, "run-a").save(position())

    def test_restores_every_model_and_optimizer_variable_and_the_position(self):
        saved = run_state.RunCheckpoint(self.model, self.directory, "run-a")
        self.assertIsNone(saved.restore_latest())
        saved.save(position())
        values = [variable.numpy().copy() for variable in every_variable(self.model)]
        for variable in every_variable(self.model):
            variable.assign(tf.zeros_like(variable) + 7)
        restored = run_state.RunCheckpoint(self.model, self.directory, "run-a").restore_latest()
        self.assertEqual(restored, position())
        for variable, value in zip(every_variable(self.model), values):
            self.assertAllEqual(variable.numpy(), value, msg=variable.path)

    def test_seed_states_and_average_are_among_the_restored_variables(self):
        paths = [variable.path for variable in every_variable(self.model)]
        self.assertTrue(any("seed_generator_state" in path for path in paths))
        self.assertTrue(any("average" in path for path in paths), paths)

    def test_round_trip_under_mirrored_strategy(self):
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            mirrored = ARALModel(tiny_config(noise=0.3))
            restored = ARALModel(tiny_config(noise=0.3))
        bias = mirrored.discriminator.classifier.bias
        bias.assign(np.arange(3, dtype=np.float32))
        run_state.RunCheckpoint(mirrored, self.directory, "run-a").save(position())
        self.assertEqual(run_state.RunCheckpoint(restored, self.directory, "run-a").restore_latest(), position())
        self.assertAllEqual(restored.discriminator.classifier.bias.numpy(), [0, 1, 2])

    def test_checkpoint_of_another_run_is_refused(self):
        run_state.RunCheckpoint(self.model, self.directory, "run-a").save(position())
        with self.assertRaisesRegex(run_state.RunStateError, "ckpt-1: a checkpoint of another run"):
            run_state.RunCheckpoint(self.model, self.directory, "run-b").restore_latest()

    def test_checkpoint_of_another_model_is_refused(self):
        run_state.RunCheckpoint(self.model, self.directory, "run-a").save(position())
        wider = ARALModel(dataclasses.replace(tiny_config(noise=0.3), sampler_units=8))
        with self.assertRaisesRegex(run_state.RunStateError, "ckpt-1: does not fit this model"):
            run_state.RunCheckpoint(wider, self.directory, "run-a").restore_latest()

    def test_non_finite_weights_are_never_saved(self):
        checkpoint = run_state.RunCheckpoint(self.model, self.directory, "run-a")
        checkpoint.save(position(step=1))
        self.model.sampler.trainable_variables[0].assign(
            tf.fill(self.model.sampler.trainable_variables[0].shape, np.inf))
        with self.assertRaisesRegex(FloatingPointError, "not finite at cycle 0 step 2; the last good"):
            checkpoint.save(position(step=2))
        self.assertEqual(run_state.RunCheckpoint(self.model, self.directory, "run-a").restore_latest().step, 1)

    def test_keeps_the_last_two(self):
        checkpoint = run_state.RunCheckpoint(self.model, self.directory, "run-a")
        for step in (1, 2, 3):
            checkpoint.save(position(step=step))
        self.assertEqual(sorted(name for name in os.listdir(self.directory) if name.endswith(".index")),
                         ["ckpt-2.index", "ckpt-3.index"])

    def test_unreadable_state_or_data_is_refused(self):
        checkpoint = run_state.RunCheckpoint(self.model, self.directory, "run-a")
        checkpoint.save(position())
        data_file = os.path.join(self.directory, "ckpt-1.data-00000-of-00001")
        with open(data_file, "r+b") as stream:
            stream.truncate(100)
        with self.assertRaisesRegex(run_state.RunStateError, "ckpt-1: "):
            run_state.RunCheckpoint(self.model, self.directory, "run-a").restore_latest()
        with open(os.path.join(self.directory, "checkpoint"), "w", encoding="utf-8") as stream:
            stream.write("garbage {")
        with self.assertRaisesRegex(run_state.RunStateError, "checkpoint: not a readable checkpoint state file"):
            run_state.RunCheckpoint(self.model, self.directory, "run-a").restore_latest()


if __name__ == "__main__":
    tf.test.main()
