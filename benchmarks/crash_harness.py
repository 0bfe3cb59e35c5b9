"""Kill a main.py run with SIGKILL at a chosen point, run it again, and compare it with an uninterrupted run.

As a script it runs main.py and stops at a point so that the caller can kill it there:

    python benchmarks/crash_harness.py [--pause_at=POINT --marker=FILE] [--event_log=FILE] -- MAIN_FLAGS...

A POINT is KIND:CYCLE:DETAIL, e.g. step:0:3. KIND is one of the loop's events (cycle, step,
checkpoint, file; see run_active_learning's `on_event`) or
- evaluate / score: the DETAIL-th batch of this process's evaluation / pool scoring in that cycle;
- rename: a file of the run (DETAIL: its path in the run) written to its temporary file, not yet
  renamed into place.
On reaching the point it writes FILE and sleeps until it is killed. With --event_log every point
passed is appended to that file, one per line.

As a module it gives the caller's side (`run_until`, `run_to_end`, `compare_runs`), used by
tests/test_crash_resume.py and benchmarks/crash_resume.py. The kill is a real SIGKILL from outside.
"""

import functools
import itertools
import os
import signal
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_SECONDS = 3600


class Harness:
    """Follows the run's events; pauses at `pause_at`."""

    def __init__(self, pause_at, marker, event_log, output_dir):
        self.pause_at, self.marker, self.event_log = pause_at, marker, event_log
        self.output_dir = os.path.abspath(output_dir)
        self.cycle = None
        self.batches = None  # (event kind, batch numbers) while a counted predict_in_batches runs

    def event(self, kind, cycle, detail):
        self.cycle = cycle
        point = f"{kind}:{cycle}:{detail}"
        if self.event_log:
            with open(self.event_log, "a", encoding="utf-8") as stream:
                stream.write(point + "\n")
        if point == self.pause_at:
            with open(self.marker, "w", encoding="utf-8") as stream:
                stream.write(f"{os.getpid()}\n")
            while True:
                time.sleep(60)

    def counting_batches(self, kind, predict_in_batches):
        """predict_in_batches whose every batch is an event `kind` with its number (see counted_call)."""
        def wrapper(*args, **kwargs):
            self.batches = kind, itertools.count(1)
            try:
                return predict_in_batches(*args, **kwargs)
            finally:
                self.batches = None
        return wrapper

    def counted_call(self, call):
        """BatchPredictor.__call__ that reports each batch of a counted predict_in_batches once it is done."""
        def wrapper(predictor, images):
            result = call(predictor, images)
            if self.batches is not None:
                kind, numbers = self.batches
                self.event(kind, self.cycle, next(numbers))
            return result
        return wrapper

    def pausing_replace(self, replace):
        """os.replace that first reports ("rename", path in the run) for files of the run."""
        def wrapper(source, destination, **kwargs):
            destination_path = os.path.abspath(destination)
            if destination_path.startswith(self.output_dir + os.sep):
                self.event("rename", self.cycle, os.path.relpath(destination_path, self.output_dir))
            return replace(source, destination, **kwargs)
        return wrapper


def _serve(argv):
    """The script: main.py's command line with the harness's hooks installed (before main.py imports them)."""
    sys.path.insert(0, ROOT)
    # pylint: disable=import-outside-toplevel
    import runpy

    from aral_tf import cli

    cli.import_tensorflow_quietly()
    from aral_tf import heuristics, loop, training

    position = argv.index("--")
    own = dict(argument.lstrip("-").split("=", 1) for argument in argv[1:position])
    main_arguments = argv[position + 1:]
    output_dir = next(argument.split("=", 1)[1] for argument in main_arguments
                      if argument.startswith("--output_dir="))
    harness = Harness(own.get("pause_at"), own.get("marker"), own.get("event_log"), output_dir)
    loop.run_active_learning = functools.partial(loop.run_active_learning, on_event=harness.event)
    loop.predict_in_batches = harness.counting_batches("evaluate", loop.predict_in_batches)
    heuristics.predict_in_batches = harness.counting_batches("score", heuristics.predict_in_batches)
    training.BatchPredictor.__call__ = harness.counted_call(training.BatchPredictor.__call__)
    os.replace = harness.pausing_replace(os.replace)
    main_path = os.path.join(ROOT, "main.py")
    sys.argv = [main_path] + main_arguments
    runpy.run_path(main_path, run_name="__main__")


def _start(main_arguments, *harness_flags, nice=0):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, os.path.abspath(__file__), *harness_flags, "--", *main_arguments]
    if nice:
        command = ["nice", "-n", str(nice)] + command
    return subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def run_until(point, main_arguments, marker, nice=0):
    """Runs main.py with `main_arguments` until `point`, then SIGKILLs it; False if it finished first.

    Raises RuntimeError if the run fails or does not get there within TIMEOUT_SECONDS.
    """
    process = _start(main_arguments, f"--pause_at={point}", f"--marker={marker}", nice=nice)
    deadline = time.time() + TIMEOUT_SECONDS
    while not os.path.exists(marker):
        if process.poll() is not None:
            _, stderr = process.communicate()
            if process.returncode == 0:
                return False
            raise RuntimeError(f"the run failed (exit code {process.returncode}) before {point}: {stderr[-2000:]}")
        if time.time() > deadline:
            process.kill()
            process.communicate()
            raise RuntimeError(f"{point} not reached within {TIMEOUT_SECONDS} s")
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    os.remove(marker)
    if process.returncode != -signal.SIGKILL:
        raise RuntimeError(f"the run at {point} ended with {process.returncode}, not by SIGKILL")
    return True


def run_to_end(main_arguments, event_log=None, nice=0):
    """Runs main.py with `main_arguments` to the end; returns its stdout."""
    process = _start(main_arguments, *([f"--event_log={event_log}"] if event_log else []), nice=nice)
    stdout, stderr = process.communicate(timeout=TIMEOUT_SECONDS)
    if process.returncode != 0:
        raise RuntimeError(f"the run failed (exit code {process.returncode}): {stderr[-2000:]}")
    return stdout


def _checkpoint_tensors(output_dir):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    reader = tf.train.load_checkpoint(os.path.join(output_dir, "checkpoints"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not name.startswith(("position", "save_counter", "_CHECKPOINTABLE"))}


def compare_runs(first, second):
    """How two finished runs of the same command differ.

    Returns `same_files` (every cycle's labeled, labels and selected arrays equal; the same cycles in
    results.jsonl) and the largest absolute differences of test accuracy, mean losses and final weights.
    """
    sys.path.insert(0, ROOT)
    from aral_tf.run_state import RunDirectory  # pylint: disable=import-outside-toplevel
    runs = RunDirectory(first), RunDirectory(second)
    records = [run.read_results() for run in runs]
    same_files = [record["cycle"] for record in records[0]] == [record["cycle"] for record in records[1]]
    for cycle in range(len(records[0])):
        for name in ("labeled.npy", "labels.npy", "selected.npy"):
            present = [run.has(cycle, name) for run in runs]
            same_files &= present[0] == present[1]
            if all(present):
                same_files &= np.array_equal(runs[0].load_array(cycle, name), runs[1].load_array(cycle, name))
    weights = [_checkpoint_tensors(path) for path in (first, second)]
    same_files &= weights[0].keys() == weights[1].keys()
    common = sorted(weights[0].keys() & weights[1].keys())
    return {
        "same_files": bool(same_files),
        "cycles": len(records[1]),
        "accuracy": max(abs(a["test_accuracy"] - b["test_accuracy"]) for a, b in zip(*records)),
        "losses": max(abs(one["losses"][name] - other["losses"][name])
                      for one, other in zip(*records) for name in one["losses"]),
        "weights": max(float(np.max(np.abs(weights[0][name].astype(np.float64) - weights[1][name]), initial=0.0))
                       for name in common),
    }


if __name__ == "__main__":
    _serve(sys.argv)
