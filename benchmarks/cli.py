"""The curve tools' flag checks (one line and exit code 2 for a flag no training run can use)."""

import math
import os

from absl import flags

from aral_tf.cli import fail, refuse_arguments


def check_training_flags(argv, minimums, positive, non_negative, values=flags.FLAGS):
    """Exits with one line and code 2 on a flag no training run can use.

    Rejects extra arguments, flags below their `minimums` ((name, minimum) pairs), --every above
    --steps, `positive` flags that are not finite and > 0, `non_negative` flags that are not
    finite and >= 0, and an --output that cannot be appended to (checked before any training).
    `values` holds the parsed flags, among them --steps, --every and --output.
    """
    refuse_arguments(argv)
    for name, minimum in minimums:
        if values[name].value < minimum:
            fail(f"--{name}={values[name].value}: must be at least {minimum}")
    if values.every > values.steps:
        fail(f"--every={values.every}: more than --steps={values.steps}, so nothing would be evaluated")
    for name in positive:
        if not (math.isfinite(values[name].value) and values[name].value > 0):
            fail(f"--{name}={values[name].value}: must be positive")
    for name in non_negative:
        if not (math.isfinite(values[name].value) and values[name].value >= 0):
            fail(f"--{name}={values[name].value}: must be a finite number >= 0")
    output = values.output
    if output and (os.path.isdir(output) or not os.access(os.path.dirname(os.path.abspath(output)), os.W_OK)
                   or os.path.exists(output) and not os.access(output, os.W_OK)):
        fail(f"--output={output}: cannot append to this file")
