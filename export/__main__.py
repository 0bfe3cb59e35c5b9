"""Exports a finished run's classifier and sampler as SavedModels in TF Serving's layout.

    python -m export --run_dir=runs/demo                          # to runs/demo/export
    python -m export --run_dir=runs/demo --export_dir=/srv/models

Writes EXPORT_DIR/classifier/<version>/ and EXPORT_DIR/sampler/<version>/ from RUN_DIR/model.keras
(saved at the end of every main.py run), with a new version above any already there.
"""

import os
import sys
import tempfile
import zipfile

from export import import_tensorflow_quietly

import_tensorflow_quietly()

# pylint: disable=wrong-import-position
from absl import app
from absl import flags

from aral_tf import export as export_lib

flags.DEFINE_string("run_dir", None, "Output directory of a finished run (holds model.keras).")
flags.DEFINE_string("export_dir", None, "Where the SavedModels go; default RUN_DIR/export.")

FLAGS = flags.FLAGS

USAGE_EXIT_CODE = 2

# What loading a missing, truncated or foreign .keras file raises.
_LOAD_ERRORS = (OSError, ValueError, TypeError, KeyError, zipfile.BadZipFile)


class UsageError(Exception):
    """A mistake in the command line or the run directory; printed as one line, exit code 2."""


def parse_flags(argv):
    """absl flag parsing; a bad flag exits with code 2 and one line."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        sys.exit(USAGE_EXIT_CODE)


def _writable_export_dir():
    export_dir = FLAGS.export_dir or os.path.join(FLAGS.run_dir, export_lib.EXPORT_SUBDIR)
    flag = "--export_dir" if FLAGS.export_dir else "--run_dir"
    try:
        os.makedirs(export_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=export_dir):
            pass
    except OSError as error:
        value = FLAGS.export_dir or FLAGS.run_dir
        raise UsageError(f"{flag}={value}: export directory {export_dir} is not writable "
                         f"({error.strerror or error})") from None
    return export_dir


def run():
    """Checks the run directory, loads its model and exports it; returns {name: version dir}."""
    run_dir = FLAGS.run_dir
    if not run_dir:
        raise UsageError("--run_dir: required (the output directory of a finished run)")
    if not os.path.isdir(run_dir):
        raise UsageError(f"--run_dir={run_dir}: no such directory")
    model_path = os.path.join(run_dir, export_lib.MODEL_FILE)
    if not os.path.isfile(model_path):
        raise UsageError(f"--run_dir={run_dir}: holds no {export_lib.MODEL_FILE}; main.py saves it when a run "
                         "finishes")
    try:
        model = export_lib.load_model(model_path)
    except _LOAD_ERRORS as error:
        message = " ".join(str(error).split()) or type(error).__name__
        raise UsageError(f"--run_dir={run_dir}: {export_lib.MODEL_FILE} cannot be loaded ({message})") from None
    return export_lib.export_run(model, _writable_export_dir())


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {' '.join(argv[1:])}", file=sys.stderr)
        sys.exit(USAGE_EXIT_CODE)
    try:
        paths = run()
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(USAGE_EXIT_CODE)
    for name, path in paths.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
