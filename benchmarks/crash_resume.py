"""Kills a run with SIGKILL at random points and checks that it resumes to the uninterrupted result.

    python -m benchmarks.crash_resume --workdir=DIR [--points=20] [--seed=0] [--sampling=kinds] [--nice=10] \
        -- MAIN_FLAGS...

1. runs main.py with MAIN_FLAGS (without --output_dir) uninterrupted in DIR/reference, logging
   every event (see benchmarks/crash_harness.py);
2. draws --points of those events at random, sorted in the order they happened: with
   --sampling=kinds a kind uniformly (step, checkpoint, file, rename, evaluate, score, cycle), then
   one event of that kind; with --sampling=events uniformly over all events (mostly training steps
   and scoring batches, as a kill at a random time would be);
3. runs the same command in DIR/crashed, killing it with SIGKILL at each point in turn and starting
   it again, then lets it finish;
4. compares the two runs and prints a Markdown summary.
"""

import collections
import json
import os
import platform
import sys
import time

import numpy as np

from benchmarks.crash_harness import compare_runs, run_to_end, run_until


def _parse(argv):
    position = argv.index("--") if "--" in argv else len(argv)
    own = dict(argument.lstrip("-").split("=", 1) for argument in argv[1:position])
    return own, argv[position + 1:]


def draw_points(events, count, seed, sampling="kinds"):
    """`count` distinct events in timeline order, drawn by kind first (`kinds`) or uniformly (`events`)."""
    rng = np.random.default_rng(seed)
    occurrences = collections.Counter(events)
    positions_by_kind = {}
    for position, event in enumerate(events):
        if occurrences[event] == 1:  # a point must be reached once only
            positions_by_kind.setdefault(event.split(":", 1)[0], []).append(position)
    if sampling == "events":
        positions_by_kind = {"any": sorted(sum(positions_by_kind.values(), []))}
    kinds = sorted(positions_by_kind)
    chosen = set()
    while len(chosen) < min(count, sum(len(positions) for positions in positions_by_kind.values())):
        kind = kinds[rng.integers(len(kinds))]
        chosen.add(positions_by_kind[kind][rng.integers(len(positions_by_kind[kind]))])
    return [events[position] for position in sorted(chosen)]


def main(argv):
    own, main_flags = _parse(argv)
    workdir, count, seed, nice = own["workdir"], int(own.get("points", 20)), int(own.get("seed", 0)), \
        int(own.get("nice", 10))
    os.makedirs(workdir)
    reference, crashed = os.path.join(workdir, "reference"), os.path.join(workdir, "crashed")
    event_log, marker = os.path.join(workdir, "events.txt"), os.path.join(workdir, "marker")

    started = time.time()
    run_to_end(main_flags + [f"--output_dir={reference}"], event_log=event_log, nice=nice)
    reference_seconds = time.time() - started
    with open(event_log, encoding="utf-8") as stream:
        events = stream.read().splitlines()
    points = draw_points(events, count, seed, own.get("sampling", "kinds"))

    started = time.time()
    killed = []
    for point in points:
        if run_until(point, main_flags + [f"--output_dir={crashed}"], marker, nice=nice):
            killed.append(point)
    run_to_end(main_flags + [f"--output_dir={crashed}"], nice=nice)
    crashed_seconds = time.time() - started

    differences = compare_runs(reference, crashed)
    summary = {"points": points, "killed": killed, "events": len(events), "reference_seconds": reference_seconds,
               "crashed_seconds": crashed_seconds, "processes": len(points) + 1, **differences}
    with open(os.path.join(workdir, "summary.json"), "w", encoding="utf-8") as stream:
        json.dump(summary, stream, indent=1)
    kinds = sorted({point.split(":", 1)[0] for point in points})
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}")
    print("| kill points | killed by SIGKILL | same labeled sets, labels, selections | cycles | max abs diff "
          "accuracy | max abs diff mean losses | max abs diff final weights | uninterrupted s | with kills s |")
    print("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| {len(points)} | {len(killed)} | {'yes' if differences['same_files'] else 'NO'} | "
          f"{differences['cycles']} | {differences['accuracy']:.3g} | {differences['losses']:.3g} | "
          f"{differences['weights']:.3g} | {reference_seconds:.0f} | {crashed_seconds:.0f} |")
    counts = ", ".join(f"{kind}: {sum(point.split(':', 1)[0] == kind for point in points)}" for kind in kinds)
    print(f"\nPoints ({counts}): " + ", ".join(f"`{point}`" for point in points))
    return 0 if differences["same_files"] and len(killed) == len(points) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
