"""Command-line helpers shared by the benchmark tools: one-line errors with exit code 2, and flag checks."""

import math
import os
import sys

from absl import flags

USAGE_EXIT_CODE = 2


def usage_error(message):
    """Prints `error: message` to stderr and exits with code 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(USAGE_EXIT_CODE)


def parse_flags(argv, values=flags.FLAGS):
    """absl flag parsing into `values`; a malformed or unknown flag exits with one line and code 2."""
    try:
        return values(argv)
    except flags.Error as error:
        usage_error(str(error).splitlines()[0])


def check_training_flags(argv, minimums, positive, non_negative, values=flags.FLAGS):
    """Exits with one line and code 2 on a flag no training run can use.

    Rejects extra arguments, flags below their `minimums` ((name, minimum) pairs), --every above
    --steps, `positive` flags that are not finite and > 0, `non_negative` flags that are not
    finite and >= 0, and an --output that cannot be appended to (checked before any training).
    `values` holds the parsed flags, among them --steps, --every and --output.
    """
    if len(argv) > 1:
        usage_error(f"unexpected arguments {' '.join(argv[1:])}")
    for name, minimum in minimums:
        if values[name].value < minimum:
            usage_error(f"--{name}={values[name].value}: must be at least {minimum}")
    if values.every > values.steps:
        usage_error(f"--every={values.every}: more than --steps={values.steps}, so nothing would be evaluated")
    for name in positive:
        if not (math.isfinite(values[name].value) and values[name].value > 0):
            usage_error(f"--{name}={values[name].value}: must be positive")
    for name in non_negative:
        if not (math.isfinite(values[name].value) and values[name].value >= 0):
            usage_error(f"--{name}={values[name].value}: must be a finite number >= 0")
    output = values.output
    if output and (os.path.isdir(output) or not os.access(os.path.dirname(os.path.abspath(output)), os.W_OK)
                   or os.path.exists(output) and not os.access(output, os.W_OK)):
        usage_error(f"--output={output}: cannot append to this file")
