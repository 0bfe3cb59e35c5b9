"""benchmarks.cli: the curve tools' flag checks, each bad flag one line with exit code 2."""

from absl import flags
import pytest

from benchmarks import cli
from tests.helpers import error_line


def make_values(output):
    """A fresh FlagValues with the flags check_training_flags reads, parsed from defaults."""
    values = flags.FlagValues()
    flags.DEFINE_integer("steps", 10, "", flag_values=values)
    flags.DEFINE_integer("every", 5, "", flag_values=values)
    flags.DEFINE_float("rate", 1e-3, "", flag_values=values)
    flags.DEFINE_float("weight", 0.0, "", flag_values=values)
    flags.DEFINE_string("output", output, "", flag_values=values)
    values(["tool"])
    return values


def check(values, argv=("tool",)):
    cli.check_training_flags(list(argv), (("steps", 1), ("every", 1)), ("rate",), ("weight",), values=values)


def test_sound_flags_pass(tmp_path):
    check(make_values(str(tmp_path / "curve.jsonl")))
    (tmp_path / "curve.jsonl").write_text("{}\n")
    check(make_values(str(tmp_path / "curve.jsonl")))  # An existing file is appended to.


@pytest.mark.parametrize("argv, setting, message", [
    (("tool", "extra"), {}, "error: unexpected arguments extra"),
    (("tool",), {"steps": 0}, "error: --steps=0: must be at least 1"),
    (("tool",), {"every": 20}, "error: --every=20: more than --steps=10, so nothing would be evaluated"),
    (("tool",), {"rate": 0.0}, "error: --rate=0.0: must be positive"),
    (("tool",), {"rate": float("inf")}, "error: --rate=inf: must be positive"),
    (("tool",), {"weight": -0.5}, "error: --weight=-0.5: must be a finite number >= 0"),
    (("tool",), {"weight": float("nan")}, "error: --weight=nan: must be a finite number >= 0"),
])
def test_each_bad_flag_is_one_line(capsys, tmp_path, argv, setting, message):
    values = make_values(str(tmp_path / "curve.jsonl"))
    for name, value in setting.items():
        values[name].value = value
    assert error_line(capsys, lambda: check(values, argv)) == message


def test_an_output_that_cannot_be_appended_to_is_one_line(capsys, tmp_path):
    for output in (tmp_path, tmp_path / "missing" / "curve.jsonl"):
        line = error_line(capsys, lambda output=output: check(make_values(str(output))))
        assert line == f"error: --output={output}: cannot append to this file"

