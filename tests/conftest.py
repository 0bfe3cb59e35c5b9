"""Test session set-up: two logical CPU devices (for MirroredStrategy tests), quiet TF logs; shared fixtures."""

import os

from absl import flags
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # pylint: disable=wrong-import-position

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

# tf.test.TestCase's deprecated `test_session` is a context manager, not a test: keep pytest from collecting
# (and skipping) it in every TestCase.
tf.test.TestCase.test_session.__test__ = False


@pytest.fixture(name="fresh_flags")
def fixture_fresh_flags():
    """Flags parsed in this process start from their defaults and are reset afterwards."""
    flags.FLAGS.unparse_flags()
    yield
    flags.FLAGS.unparse_flags()
