"""aral_tf.cli: one-line errors and exit codes, flag parsing, muted native stderr, writability."""

import logging
import os

from absl import flags
import pytest

from aral_tf import cli
from tests.helpers import error_line


def test_quiet_info_logs_drops_info_and_keeps_warnings(caplog):
    loggers = [logging.getLogger(name) for name in ("absl", "tensorflow")]
    for logger in loggers:  # TensorFlow's logger may not propagate to the root, where caplog listens.
        caplog.set_level(logging.INFO, logger=logger.name)
        logger.addHandler(caplog.handler)
    try:
        with cli.quiet_info_logs():
            loggers[0].info("Sharding callback duration: 152 microseconds")
            loggers[1].warning("a real warning")
        loggers[0].info("after the context")
    finally:
        for logger in loggers:
            logger.removeHandler(caplog.handler)
    messages = [record.getMessage() for record in caplog.records]
    assert "Sharding callback duration: 152 microseconds" not in messages
    assert "a real warning" in messages and "after the context" in messages


def test_native_stderr_is_muted_inside_and_restored_after(capfd):
    with cli.muted_native_stderr():
        os.write(2, b"native start-up line\n")
    os.write(2, b"our one-line error\n")
    assert capfd.readouterr().err == "our one-line error\n"


def test_stderr_comes_back_when_the_body_raises(capfd):
    with pytest.raises(ImportError):
        with cli.muted_native_stderr():
            raise ImportError("no such module")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_fail_prints_one_line_with_its_exit_code(capsys):
    assert error_line(capsys, lambda: cli.fail("--x=1: bad")) == "error: --x=1: bad"
    assert error_line(capsys, lambda: cli.fail("disk full", cli.FAILURE_EXIT_CODE),
                      code=cli.FAILURE_EXIT_CODE) == "error: disk full"


def test_one_line_joins_a_multi_line_message_and_names_a_bare_error():
    assert cli.one_line(ValueError("first\n  second")) == "first second"
    assert cli.one_line(KeyError()) == "KeyError"


def test_parse_flags_reports_an_unknown_flag_in_one_line(capsys):
    values = flags.FlagValues()
    flags.DEFINE_integer("steps", 10, "", flag_values=values)
    assert cli.parse_flags(["tool", "--steps=3"], values) == ["tool"]
    assert values.steps == 3
    line = error_line(capsys, lambda: cli.parse_flags(["tool", "--stepz=3"], values))
    assert line.startswith("error: ") and "stepz" in line


def test_a_missing_flagfile_is_one_line_without_absl_prefixes(capsys, tmp_path):
    values = flags.FlagValues()
    missing = tmp_path / "missing.flags"
    line = error_line(capsys, lambda: cli.parse_flags(["tool", f"--flagfile={missing}"], values))
    assert "ERROR:" not in line and str(missing) in line


def test_parse_flags_applies_prepare_first():
    values = flags.FlagValues()
    flags.DEFINE_integer("steps", 10, "", flag_values=values)
    cli.parse_flags(["tool"], values, prepare=lambda argv: argv + ["--steps=7"])
    assert values.steps == 7


def test_refuse_arguments(capsys):
    cli.refuse_arguments(["tool"])
    assert error_line(capsys, lambda: cli.refuse_arguments(["tool", "a", "b"])) == "error: unexpected arguments a b"


def test_require_writable_creates_the_directory_and_leaves_it_empty(tmp_path):
    directory = tmp_path / "new" / "run"
    cli.require_writable("output_dir", str(directory))
    assert directory.is_dir() and not list(directory.iterdir())


def test_require_writable_names_the_flag(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(cli.UsageError, match=rf"^--output_dir={blocker}/run: not writable \("):
        cli.require_writable("output_dir", str(blocker / "run"))
    with pytest.raises(cli.UsageError, match=rf"^--run_dir=r: not writable \({blocker}/export\) \("):
        cli.require_writable("run_dir", str(blocker / "export"), shown="r")
