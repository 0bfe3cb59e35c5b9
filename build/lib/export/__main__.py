"""Exports a finished run's classifier and sampler as SavedModels in TF Serving's layout.

    python -m export --run_dir=runs/demo                          # to runs/demo/export
    python -m export --run_dir=runs/demo --export_dir=/srv/models

Writes EXPORT_DIR/classifier/<version>/ and EXPORT_DIR/sampler/<version>/ from RUN_DIR/model.keras
(saved at the end of every main.py run), with a new version above any already there.
"""

import os
import zipfile

from aral_tf.cli import import_tensorflow_quietly

import_tensorflow_quietly()

# pylint: disable=wrong-import-position
from absl import app, flags

from aral_tf import cli
from aral_tf import export as export_lib
from aral_tf.cli import UsageError, fail, one_line, refuse_arguments, require_writable

flags.DEFINE_string("run_dir", None, "Output directory of a finished run (holds model.keras).")
flags.DEFINE_string("export_dir", None, "Where the SavedModels go; default RUN_DIR/export.")

FLAGS = flags.FLAGS

# What loading a missing, truncated or foreign .keras file raises.
_LOAD_ERRORS = (OSError, ValueError, TypeError, KeyError, zipfile.BadZipFile)


def parse_flags(argv):
    """absl flag parsing; a bad flag exits with code 2 and one line."""
    return cli.parse_flags(argv, FLAGS)


def _writable_export_dir():
    export_dir = FLAGS.export_dir or os.path.join(FLAGS.run_dir, export_lib.EXPORT_SUBDIR)
    if FLAGS.export_dir:
        require_writable("export_dir", export_dir)
    else:
        require_writable("run_dir", export_dir, shown=FLAGS.run_dir)
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
    if not zipfile.is_zipfile(model_path):
        # Keras says "File not found" of a file it cannot open as a zip.
        raise UsageError(f"--run_dir={run_dir}: {export_lib.MODEL_FILE} cannot be loaded (not a complete .keras "
                         "zip archive: truncated or another kind of file); delete it and run main.py again with "
                         "the run's flags to save it anew from the last checkpoint")
    try:
        model = export_lib.load_model(model_path)
    except _LOAD_ERRORS as error:
        message = one_line(error)
        raise UsageError(f"--run_dir={run_dir}: {export_lib.MODEL_FILE} cannot be loaded ({message})") from None
    return export_lib.export_run(model, _writable_export_dir())


def main(argv):
    refuse_arguments(argv)
    try:
        paths = run()
    except UsageError as error:
        fail(error)
    for name, path in paths.items():
        print(f"{name}: {path}")


def console_main():
    """The `aral-tf-export` console command: `python -m export` with the same flags."""
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    console_main()
