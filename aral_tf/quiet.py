"""Muting TensorFlow's native start-up lines, which would bury our one-line errors (no TensorFlow import here)."""

import contextlib
import os


@contextlib.contextmanager
def muted_native_stderr():
    """Within this context, file descriptor 2 (where TensorFlow's C++ logging writes) goes to /dev/null.

    Sets TF_CPP_MIN_LOG_LEVEL=2 unless the environment gives one. Python's own
    errors raised inside the context are printed after it, on the real stderr.
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
