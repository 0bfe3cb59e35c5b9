"""What every ARAL-TF command shares: one-line errors and exit codes, flag parsing, a quiet TensorFlow import.

A user's mistake (a flag, a file, a directory) is one line on stderr, `error: <flag or file>: <what>`,
and exit code 2; a run stopped by the machine (a full disk, diverged training) exits with code 1.
Nothing here imports TensorFlow at module level, so a command can mute TensorFlow's native start-up
lines before importing it.
"""

import contextlib
import logging
import os
import sys
import tempfile

from absl import flags

USAGE_EXIT_CODE = 2
FAILURE_EXIT_CODE = 1


class UsageError(Exception):
    """A mistake in the command line or its input files; printed as one line, exit code 2."""


def one_line(error, limit=None):
    """An exception's message on one line (its type name where it has none), cut to `limit` characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if limit is None or len(text) <= limit else text[:limit - 3] + "..."


def fail(message, code=USAGE_EXIT_CODE):
    """Prints `error: message` on stderr and exits with `code`."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def flag_error_line(error):
    """absl's message for a flag error, as one line without its own `ERROR:` prefixes."""
    line = str(error).splitlines()[0] if str(error) else type(error).__name__
    while line.upper().startswith("ERROR:"):
        line = line[len("ERROR:"):].lstrip(": ")
    return line


def parse_flags(argv, values=flags.FLAGS, prepare=None):
    """absl flag parsing into `values` (after `prepare(argv)` if given); a bad flag exits with one line, code 2."""
    try:
        return values(prepare(argv) if prepare else argv)
    except flags.Error as error:
        fail(flag_error_line(error))


def refuse_arguments(argv):
    """Exits with one line and code 2 if `argv` holds anything beyond the program name."""
    if len(argv) > 1:
        fail(f"unexpected arguments {' '.join(argv[1:])}")


@contextlib.contextmanager
def muted_native_stderr():
    """Within this context, file descriptor 2 (where TensorFlow's C++ logging writes) goes to /dev/null.

    Sets TF_CPP_MIN_LOG_LEVEL=2 unless the environment gives one. Python's own errors raised inside
    the context are printed after it, on the real stderr.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    saved_stderr = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(devnull)


def _warning_or_above(record):
    return record.levelno >= logging.WARNING


@contextlib.contextmanager
def quiet_info_logs():
    """Within this context, the `tensorflow` and absl loggers drop records below WARNING; warnings and
    errors still show.

    TensorFlow logs INFO lines while saving (e.g. `Sharding callback duration` per checkpoint, renamed
    captures in a SavedModel). A filter, not a level: tf.saved_model.save itself resets absl's level.
    """
    loggers = [logging.getLogger(name) for name in ("tensorflow", "absl")]
    for logger in loggers:
        logger.addFilter(_warning_or_above)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(_warning_or_above)


def import_tensorflow_quietly():
    """Imports TensorFlow and lists its devices with native stderr muted.

    Its C++ start-up lines (CUDA probing on a CPU-only host) come before logging is configured and
    would bury a one-line error.
    """
    with muted_native_stderr():
        import tensorflow  # pylint: disable=import-outside-toplevel

        tensorflow.config.list_physical_devices()


def require_writable(flag, directory, shown=None):
    """Creates `directory` and checks that it is writable (nothing in it changes); UsageError otherwise.

    The error names `--flag=shown` (`shown` defaults to `directory`).
    """
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        where = "" if shown is None or shown == directory else f" ({directory})"
        raise UsageError(f"--{flag}={shown or directory}: not writable{where} "
                         f"({error.strerror or error})") from None


def read_text(path, error, max_bytes=None, limit_reason=""):
    """The UTF-8 text of `path` (a leading BOM dropped); `error(message)` is raised, one line naming the
    file, if it cannot be read, is not UTF-8 or holds more than `max_bytes` (`limit_reason` says why)."""
    try:
        if max_bytes is not None and os.path.getsize(path) > max_bytes:
            raise error(f"{path}: {os.path.getsize(path):,} bytes, more than {limit_reason or f'{max_bytes:,}'}")
        with open(path, "rb") as stream:
            return stream.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text") from None
    except OSError as os_error:
        raise error(f"{path}: cannot be read ({os_error.strerror or os_error})") from None
