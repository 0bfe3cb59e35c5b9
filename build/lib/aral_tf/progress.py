"""Progress of a long loop (training steps, pool images): a bar on a terminal, a line every few seconds elsewhere.

keras.utils.Progbar takes every POSIX process for a terminal, so in a log file it leaves one update
per step, joined by backspaces; `Progress` uses it only when stdout is a terminal.
"""

import sys
import time

import keras

LINE_INTERVAL_SECONDS = 10.0


class Progress:
    """Progress towards `total` units, from `start` done: keras' bar on a terminal; elsewhere (a file, a
    pipe) one plain line every `interval` seconds and one at the end, with the rate and the mean of each
    value since the previous line. Nothing when not `verbose`."""

    def __init__(self, total, unit_name, verbose=True, start=0, interval=LINE_INTERVAL_SECONDS):
        self._total, self._unit_name, self._interval = total, unit_name, interval
        self._verbose = verbose
        self._bar = None
        if verbose and sys.stdout.isatty():
            self._bar = keras.utils.Progbar(total, unit_name=unit_name)
            if start:
                self._bar.update(start)
        self._started = self._last_line = time.monotonic()
        self._start = start
        self._sums, self._count = {}, 0

    def update(self, current, values=()):
        """`current` units are done; `values` are (name, value) pairs of the last update."""
        if self._bar is not None:
            self._bar.update(current, list(values))
            return
        if not self._verbose:
            return
        for name, value in values:
            self._sums[name] = self._sums.get(name, 0.0) + value
        self._count += 1
        now = time.monotonic()
        if now - self._last_line < self._interval and current < self._total:
            return
        elapsed = now - self._started
        rate = (current - self._start) / elapsed if elapsed > 0 else 0.0
        speed = f"{rate:.0f} {self._unit_name}s/s" if rate >= 10 or rate == 0 else f"{1 / rate:.2f} s/{self._unit_name}"
        means = "".join(f" - {name}: {total / self._count:.4f}" for name, total in self._sums.items())
        print(f"  {self._unit_name} {current}/{self._total}, {elapsed:.0f} s, {speed}{means}", flush=True)
        self._last_line, self._sums, self._count = now, {}, 0
