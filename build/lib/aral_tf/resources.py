"""What the machine has (memory, disk) and rough estimates of what a run needs, for checks before it starts.

The estimates are deliberately generous upper figures, so that a run refused by them could not have
finished; they are no prediction of a run's actual use.
"""

import math
import os
import shutil

import numpy as np

# Bytes a batch needs per image value (H x W x C) in memory: the uint8 batch, its padded copy, its
# float32 copy and the first layers' activations.
BATCH_BYTES_PER_VALUE = 16
# Disk a run's saves need, in multiples of the learner's weight bytes: each checkpoint holds the
# weights, two Adam moments and D's moving average (x4), CHECKPOINTS_KEPT of them plus one being
# written (x3), model.keras the same again (x4) and the two SavedModels of an export (x2).
SAVE_BYTES_PER_WEIGHT_BYTE = 18


def available_memory():
    """Bytes of memory available to a new allocation (MemAvailable of /proc/meminfo); None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def free_disk(path):
    """Free bytes on the filesystem of `path` (or of its nearest existing parent); None if unknown."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def batch_bytes(batch_size, image_shape):
    """The memory estimate of one batch of `batch_size` images of `image_shape`."""
    return batch_size * math.prod(int(size) for size in image_shape) * BATCH_BYTES_PER_VALUE


def save_bytes(variables):
    """The disk estimate of a run's checkpoints, model.keras and export for a learner with `variables`."""
    weight_bytes = sum(math.prod(int(size) for size in variable.shape)
                       * np.dtype(getattr(variable.dtype, "name", variable.dtype)).itemsize for variable in variables)
    return weight_bytes * SAVE_BYTES_PER_WEIGHT_BYTE


def size_text(count):
    """Bytes in KiB/MiB/GiB/TiB, e.g. '1.5 GiB'."""
    value, unit = float(count), "bytes"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            break
        value /= 1024
    return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
