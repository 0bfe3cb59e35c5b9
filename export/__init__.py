"""The export command (`python -m export`), the TF Serving kit (configs, README) and its client."""

import os


def import_tensorflow_quietly():
    """Imports TensorFlow and lists its devices with native stderr muted: its C++ start-up lines
    (CUDA probing on a CPU-only host) come before logging is configured and would bury a one-line
    error. (`aral_tf.quiet` does the same for main.py; the client imports nothing of aral_tf.)"""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    saved_stderr = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # pylint: disable=import-outside-toplevel

        tensorflow.config.list_physical_devices()
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(devnull)
