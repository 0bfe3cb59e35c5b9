"""The console commands of `pip install .` (`aral-tf`, `aral-tf-export`): the fast allocator first, then
the command, imported only after the re-exec so that TensorFlow loads with mimalloc preloaded."""

import importlib

from aral_tf import allocator  # Imports no TensorFlow.


def _run(module_name):
    allocator.use_fast_allocator()
    importlib.import_module(module_name).console_main()


def run_main():
    """`aral-tf`: `python main.py` with the same flags."""
    _run("main")


def run_export():
    """`aral-tf-export`: `python -m export` with the same flags."""
    _run("export.__main__")
