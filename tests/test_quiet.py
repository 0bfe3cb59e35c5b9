"""muted_native_stderr: file descriptor 2 is silenced inside the context and restored after it."""

import os

import pytest

from aral_tf.quiet import muted_native_stderr


def test_native_stderr_is_muted_inside_and_restored_after(capfd):
    with muted_native_stderr():
        os.write(2, b"native start-up line\n")
    os.write(2, b"our one-line error\n")
    assert capfd.readouterr().err == "our one-line error\n"


def test_stderr_comes_back_when_the_body_raises(capfd):
    with pytest.raises(ImportError):
        with muted_native_stderr():
            raise ImportError("no such module")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
