"""The command line killed with SIGKILL at several points and run again ends like an uninterrupted run."""

import os
import tempfile

import numpy as np
import pytest

from benchmarks.crash_harness import compare_runs, run_to_end, run_until

pytestmark = pytest.mark.slow

RUN_FLAGS = ["--train_steps=5", "--checkpoint_every=2", "--batch_size=4", "--eval_batch_size=4",
             "--initial_labels=4", "--budget=2", "--cycles=2", "--pretrain_steps=5", "--width=0.02", "--latent_dim=4",
             "--noprogress", "--noexport"]

# In timeline order; each process resumes at or before the previous point and stops at the next one.
KILL_POINTS = [
    "step:-1:3",                                          # the label-free stage (cycle -1), after its checkpoint at 2
    "checkpoint:-1:4",                                    # while it writes a checkpoint
    "step:0:1",                                           # cycle 0 after that stage, before its first checkpoint
    "step:0:3",                                           # mid-training, after the checkpoint at step 2
    "evaluate:0:2",                                       # mid-evaluation, after the end-of-cycle checkpoint
    "score:1:3",                                          # mid-scoring (the selection after cycle 0)
    f"rename:1:{os.path.join('cycle_1', 'labeled.npy')}",  # a file written, not yet renamed into place
    f"file:1:{os.path.join('cycle_1', 'labeled.npy')}",    # between two files
    "step:1:1",                                           # training of cycle 1 before its first checkpoint
]


def write_tiny_npz(path):
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8), y_train=np.arange(40) % 3,
             x_test=rng.integers(0, 256, (10, 8, 8, 1), dtype=np.uint8), y_test=np.arange(10) % 3)
    return path


def test_killed_run_resumes_to_the_uninterrupted_result():
    with tempfile.TemporaryDirectory() as workdir:
        data_file = write_tiny_npz(os.path.join(workdir, "tiny.npz"))
        reference, crashed = os.path.join(workdir, "reference"), os.path.join(workdir, "crashed")
        run_to_end([f"--dataset={data_file}", f"--output_dir={reference}", *RUN_FLAGS])
        arguments = [f"--dataset={data_file}", f"--output_dir={crashed}", *RUN_FLAGS]
        for point in KILL_POINTS:
            assert run_until(point, arguments, os.path.join(workdir, "marker")), f"finished before {point}"
            if point.startswith("rename:"):
                names = os.listdir(os.path.join(crashed, "cycle_1"))
                assert "labeled.npy" not in names and any(name.startswith(".tmp-") for name in names), names
        assert "continuing at cycle 1" in run_to_end(arguments)

        differences = compare_runs(reference, crashed)
        assert differences["same_files"] and differences["cycles"] == 3, differences
        assert differences["accuracy"] <= 1e-6 and differences["losses"] <= 2e-6, differences
        assert differences["weights"] <= 1e-5, differences
        assert not [name for _, _, names in os.walk(crashed) for name in names if name.startswith(".tmp-")]
