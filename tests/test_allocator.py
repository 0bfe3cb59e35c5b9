"""The allocator switch: one re-exec with mimalloc preloaded, none with ARAL_TF_ALLOCATOR=system."""

import os
import subprocess
import sys

from aral_tf import allocator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOW_PRELOAD = ("import os; from aral_tf import allocator; allocator.use_fast_allocator(); "
                "print(os.environ.get('LD_PRELOAD', ''))")


def _run(tmp_path, switch=None):
    """`python -c SHOW_PRELOAD` with a stand-in libmimalloc.so on the path (the loader skips it: not ELF)."""
    library = tmp_path / allocator.LIBRARY
    library.parent.mkdir(parents=True)
    library.write_bytes(b"not a library")
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("LD_PRELOAD", allocator.SWITCH)}
    environment["PYTHONPATH"] = os.pathsep.join([ROOT, str(tmp_path)])
    if switch:
        environment[allocator.SWITCH] = switch
    result = subprocess.run([sys.executable, "-c", SHOW_PRELOAD], capture_output=True, text=True, cwd=ROOT,
                            env=environment, timeout=120, check=False)
    return result, str(library)


def test_mimalloc_is_preloaded_by_one_re_exec(tmp_path):
    result, library = _run(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [library]


def test_system_keeps_glibc_malloc(tmp_path):
    result, _ = _run(tmp_path, switch="system")
    assert result.returncode == 0 and result.stdout == "\n", result.stdout + result.stderr


def test_an_unknown_allocator_gives_one_line_and_exit_code_2(tmp_path):
    result, _ = _run(tmp_path, switch="jemalloc")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: ARAL_TF_ALLOCATOR=jemalloc: choose mimalloc or system"]


def test_the_console_commands_import_no_tensorflow_before_the_re_exec():
    code = "import sys; import aral_tf.commands; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                            check=False)
    assert result.returncode == 0 and result.stdout == "False\n", result.stdout + result.stderr
