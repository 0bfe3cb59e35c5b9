"""Runs active learning methods side by side and tabulates and plots them (paper Figs. 3-5).

    python -m benchmarks.compare --dataset=mnist --data_file=mnist.npz --methods=aral,vaal,random,entropy,bald \
        --seeds=3 --output_dir=DIR [main.py's schedule and model flags]

Each method x seed runs `main.py --method=M --seed=K --output_dir=DIR/M/seed_K` (a subprocess, so every
run starts from a fresh, seeded TensorFlow) with the other flags passed through unchanged. Runs whose
results.jsonl already holds every cycle of this schedule are skipped, so a long comparison can be finished
over several sittings; an unfinished one (stopped, or run with fewer --cycles) resumes where it stopped. Then:
    DIR/summary.csv               method, num_labeled, seeds, mean and std of the test accuracy
    DIR/summary.md                the same as a table, and the labels each method needs to reach --targets
    DIR/accuracy_vs_labels.png    one line per method with a +-1 std band; `full` as a dashed line
The std is the sample standard deviation over seeds (0 for one seed). Only finished runs are summarised.
"""

import csv
import datetime
import io
import os
import re
import subprocess
import sys

from aral_tf import cli

cli.import_tensorflow_quietly()

# pylint: disable=wrong-import-position
from absl import app, flags
import numpy as np

from aral_tf import plots
from aral_tf.cli import USAGE_EXIT_CODE, UsageError, fail, refuse_arguments, require_writable
from aral_tf.methods import FULL, METHODS
from aral_tf.run_state import RunDirectory, RunStateError, write_atomic
from flags import definitions

flags.DEFINE_list("methods", ["aral", "vaal", "random", "entropy", "bald"],
                  f"Methods to compare, from: {', '.join(METHODS)}.")
flags.DEFINE_integer("seeds", 3, "Seeds per method: 0, 1, ..., seeds - 1.")
flags.DEFINE_list("targets", ["0.8", "0.9", "0.95"], "Test accuracies for the labels-needed table.")
flags.DEFINE_bool("run", True, "Run the unfinished runs; --norun only writes the summary of the finished ones.")

FLAGS = flags.FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Flags the runner sets per run (or reads itself); every other flag goes to main.py unchanged.
OWN_FLAGS = ("methods", "seeds", "targets", "run", "norun", "output_dir", "method", "seed", "progress", "noprogress")


def read_records(run_dir):
    """The records of DIR/results.jsonl ([] if there is none); RunStateError names a malformed line."""
    return RunDirectory(run_dir).read_results()


def schedule(method, cycles, train_steps):
    """(records, training steps of each) of a finished run; `full` trains once, as long as the whole schedule.

    The same schedule as main.py's: `full` runs cycle 0 alone for train_steps x (cycles + 1) steps.
    """
    return (1, train_steps * (cycles + 1)) if method == FULL else (cycles + 1, train_steps)


def is_finished(records, method, cycles, train_steps):
    """Whether a run's records hold every cycle of this schedule, each trained for its steps."""
    count, steps = schedule(method, cycles, train_steps)
    return len(records) >= count and all(record.get("train_steps") == steps for record in records[:count])


def run_dir_of(output_dir, method, seed):
    return os.path.join(output_dir, method, f"seed_{seed}")


def pending_runs(output_dir, methods, seeds, cycles, train_steps):
    """(method, seed) pairs whose run is not finished, in the order they should run (seed-major)."""
    return [(method, seed) for seed in range(seeds) for method in methods
            if not is_finished(read_records(run_dir_of(output_dir, method, seed)), method, cycles, train_steps)]


def passthrough_arguments(argv):
    """main.py's flags from the runner's command line (without the runner's own and per-run flags)."""
    kept = []
    for argument in argv:
        name = argument.lstrip("-").split("=", 1)[0]
        if not (argument.startswith("--") and name in OWN_FLAGS):
            kept.append(argument)
    return kept


def run_one(output_dir, method, seed, arguments, log=print):
    """Runs main.py for one method and seed; returns its exit code. Its output is appended to RUN_DIR.log.

    An unfinished run (stopped, or finished with fewer `--cycles`) resumes in place: main.py keeps
    its finished cycles and refuses, with exit code 2, flags that differ from the run's.
    """
    run_dir = run_dir_of(output_dir, method, seed)
    os.makedirs(os.path.dirname(run_dir), exist_ok=True)
    command = [sys.executable, os.path.join(ROOT, "main.py"), *arguments, f"--method={method}", f"--seed={seed}",
               f"--output_dir={run_dir}", "--noprogress"]
    done = len(read_records(run_dir))
    state = f"resuming after {done} finished cycle{'s' if done != 1 else ''}" if done else "running"
    log(f"{datetime.datetime.now():%H:%M:%S} {method} seed {seed}: {state}")
    with open(f"{run_dir}.log", "a", encoding="utf-8") as stream:
        return subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, cwd=ROOT, check=False).returncode


def summarize(output_dir, methods, cycles, train_steps):
    """Rows (method, num_labeled, seeds, mean, std) over the finished runs under `output_dir`."""
    rows = []
    for method in methods:
        method_dir = os.path.join(output_dir, method)
        runs = []
        for name in sorted(os.listdir(method_dir)) if os.path.isdir(method_dir) else []:
            if not (re.fullmatch(r"seed_\d+", name) and os.path.isdir(os.path.join(method_dir, name))):
                continue
            records = read_records(os.path.join(method_dir, name))
            if is_finished(records, method, cycles, train_steps):
                runs.append(records)
        by_labels = {}
        for records in runs:
            for record in records:
                by_labels.setdefault(record["num_labeled"], []).append(record["test_accuracy"])
        for num_labeled in sorted(by_labels):
            accuracies = np.asarray(by_labels[num_labeled])
            std = float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else 0.0
            rows.append({"method": method, "num_labeled": num_labeled, "seeds": len(accuracies),
                         "mean_accuracy": float(np.mean(accuracies)), "std_accuracy": std})
    return rows


def labels_to_reach(rows, method, target):
    """The fewest labels at which `method`'s mean accuracy reaches `target` (None if it never does)."""
    reached = [row["num_labeled"] for row in rows if row["method"] == method and row["mean_accuracy"] >= target]
    return min(reached) if reached else None


def csv_text(rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["method", "num_labeled", "seeds", "mean_accuracy", "std_accuracy"],
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "mean_accuracy": f"{row['mean_accuracy']:.4f}",
                         "std_accuracy": f"{row['std_accuracy']:.4f}"})
    return buffer.getvalue()


def _cell(row):
    return f"{100 * row['mean_accuracy']:.2f} ± {100 * row['std_accuracy']:.2f} ({row['seeds']})"


def markdown_text(rows, methods, targets):
    """Test accuracy (%) per label count and method, mean ± std (seeds); then labels needed per target."""
    curves = [method for method in methods if method != FULL and any(row["method"] == method for row in rows)]
    cells = {(row["method"], row["num_labeled"]): row for row in rows}
    lines = ["Test accuracy (%), mean ± std over seeds (number of seeds).", "",
             "| labels | " + " | ".join(curves) + " |", "| ---: |" + " ---: |" * len(curves)]
    for num_labeled in sorted({row["num_labeled"] for row in rows if row["method"] in curves}):
        lines.append(f"| {num_labeled} | " + " | ".join(
            _cell(cells[method, num_labeled]) if (method, num_labeled) in cells else "" for method in curves) + " |")
    for row in (row for row in rows if row["method"] == FULL):
        lines += ["", f"`full` (every label, {row['num_labeled']} images): {_cell(row)}"]
    lines += ["", "Labels needed to reach a mean test accuracy (– : not reached).", "",
              "| method | " + " | ".join(f"{100 * target:g} %" for target in targets) + " |",
              "| --- |" + " ---: |" * len(targets)]
    for method in curves:
        needed = [labels_to_reach(rows, method, target) for target in targets]
        counts = ("–" if count is None else str(count) for count in needed)
        lines.append(f"| {method} | " + " | ".join(counts) + " |")
    return "\n".join(lines) + "\n"


def write_summary(output_dir, methods, cycles, train_steps, targets, title):
    """Writes summary.csv, summary.md and accuracy_vs_labels.png under `output_dir`; returns the rows."""
    rows = summarize(output_dir, methods, cycles, train_steps)
    write_atomic(os.path.join(output_dir, "summary.csv"), csv_text(rows).encode())
    write_atomic(os.path.join(output_dir, "summary.md"), markdown_text(rows, methods, targets).encode())
    write_atomic(os.path.join(output_dir, plots.PLOT_FILE), plots.accuracy_png(rows, methods, title))
    return rows


def parse_flags(argv):
    """main.py's flags (with the dataset's flagfile first) and the comparison's own."""
    return cli.parse_flags(argv, FLAGS, prepare=definitions.with_dataset_flagfile)


def main(argv):
    refuse_arguments(argv)
    unknown = [method for method in FLAGS.methods if method not in METHODS]
    if unknown or not FLAGS.methods:
        fail(f"--methods={','.join(FLAGS.methods)}: unknown method {(unknown or [''])[0]!r}; "
                    f"choose from {', '.join(METHODS)}")
    if FLAGS.seeds < 1:
        fail(f"--seeds={FLAGS.seeds}: must be at least 1")
    if not FLAGS.output_dir:
        fail("--output_dir: required (the comparison's directory)")
    try:
        targets = [float(target) for target in FLAGS.targets]
    except ValueError:
        targets = [-1.0]
    if not all(0.0 <= target <= 1.0 for target in targets):
        fail(f"--targets={','.join(FLAGS.targets)}: must be accuracies in [0, 1]")
    try:
        require_writable("output_dir", FLAGS.output_dir)
    except UsageError as error:
        fail(str(error))
    try:
        run_and_summarize(targets)
    except RunStateError as error:
        fail(str(error))


def run_and_summarize(targets):
    """Runs the pending runs (unless --norun), then writes the summary; exits 1 if a run failed."""
    arguments = passthrough_arguments(sys.argv[1:])
    pending = pending_runs(FLAGS.output_dir, FLAGS.methods, FLAGS.seeds, FLAGS.cycles, FLAGS.train_steps)
    finished = len(FLAGS.methods) * FLAGS.seeds - len(pending)
    print(f"{finished} runs finished, {len(pending)} {'to run' if FLAGS.run else 'not finished (--norun)'}; "
          f"results in {FLAGS.output_dir}", flush=True)
    failures = []
    for method, seed in pending if FLAGS.run else []:
        code = run_one(FLAGS.output_dir, method, seed, arguments, log=lambda message: print(message, flush=True))
        if code:
            log_file = f"{run_dir_of(FLAGS.output_dir, method, seed)}.log"
            failures.append(f"{method} seed {seed} (exit code {code}; see {log_file})")
            if code == USAGE_EXIT_CODE:
                break
    title = f"{FLAGS.dataset}, {FLAGS.seeds} seed{'s' if FLAGS.seeds > 1 else ''}"
    write_summary(FLAGS.output_dir, FLAGS.methods, FLAGS.cycles, FLAGS.train_steps, targets, title)
    print(f"summary: {os.path.join(FLAGS.output_dir, 'summary.md')}")
    if failures:
        print("failed: " + "; ".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
