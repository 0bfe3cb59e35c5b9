"""mimalloc for TensorFlow's CPU step, preloaded by re-executing the command once.

TensorFlow's CPU kernels allocate and free large buffers every step; glibc's malloc hands them back
to the kernel (mmap / munmap) each time, so a MNIST step spends about as much system time as user
time. mimalloc (the `cmeel-mimalloc` wheel of requirements.txt, which ships libmimalloc.so) keeps
them. It must be loaded before anything else, hence LD_PRELOAD and one re-exec at the very top of
a command, before TensorFlow is imported. `ARAL_TF_ALLOCATOR=system` keeps glibc's malloc.
Imports no TensorFlow.
"""

import os
import sys

from aral_tf.cli import fail

SWITCH = "ARAL_TF_ALLOCATOR"
CHOICES = ("mimalloc", "system")
LIBRARY = os.path.join("cmeel.prefix", "lib", "libmimalloc.so.3")
# Set in the re-executed process, so that a preload the dynamic loader refused cannot loop.
_REEXECUTED = "_ARAL_TF_ALLOCATOR_REEXECUTED"


def library_path():
    """The installed libmimalloc.so (in a directory of sys.path), or None."""
    for directory in sys.path:
        candidate = os.path.join(os.path.abspath(directory or os.curdir), LIBRARY)
        if os.path.isfile(candidate):
            return candidate
    return None


def use_fast_allocator():
    """Re-executes this process once with mimalloc preloaded, unless ARAL_TF_ALLOCATOR=system, mimalloc is
    not installed or already preloaded; returns when nothing is to change. Call before importing TensorFlow.

    An unknown ARAL_TF_ALLOCATOR exits with one line and code 2.
    """
    choice = os.environ.get(SWITCH, CHOICES[0])
    if choice not in CHOICES:
        fail(f"{SWITCH}={choice}: choose {' or '.join(CHOICES)}")
    library = library_path()
    preloaded = os.environ.get("LD_PRELOAD", "")
    if choice == "system" or library is None or os.environ.get(_REEXECUTED) or "libmimalloc" in preloaded:
        return
    environment = dict(os.environ, LD_PRELOAD=f"{library} {preloaded}".strip(), **{_REEXECUTED: "1"})
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environment)
