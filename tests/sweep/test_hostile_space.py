"""Hostile sweep spaces (issue 20, case 9): huge numbers, deep nesting, values no setting should take.

Before: a 5001-digit integer ended in int()'s ValueError traceback, 100k-deep JSON in a RecursionError
traceback, and `high` = 10^21 epochs started a trial. Each is now one ConfigError line naming the space
or the setting, raised before anything runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from seqtrack_mlflow.cli import main
from seqtrack_mlflow.config import ConfigError, DataConfig, TrackerConfig, TrainSettings, build_settings
from seqtrack_mlflow.sweep.space import MAX_DEPTH, MAX_INT, MAX_SPACE_BYTES, parse_space, resolve_space

TRACKER = TrackerConfig()


def settings() -> TrainSettings:
    return build_settings("tiny", {}, {}, DataConfig(source="synthetic"))


def _refused(space: str, *parts: str) -> str:
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        resolve_space(space, settings(), TRACKER, set())
    message = str(info.value)
    assert time.perf_counter() - start < 2, "the refusal must not cost a parse of the hostile input"
    assert "\n" not in message and len(message) < 400, message
    for part in parts:
        assert part in message, message
    return message


def test_a_5001_digit_integer_is_one_line(tmp_path):
    text = '{"epochs": {"low": 1, "high": ' + "9" * 5001 + "}}"
    _refused(text, "the space holds an integer of 5001 digits")
    path = tmp_path / "space.json"
    path.write_text(text)
    _refused(str(path), f"space file {path} holds an integer of 5001 digits")
    _refused('{"lr": [1e-4, -' + "1" * 400 + "]}", "400 digits")  # a float setting too, negative


def test_deep_nesting_is_one_line(tmp_path):
    _refused('{"epochs": ' + "[" * 100_000 + "]" * 100_000 + "}", f"over the {MAX_SPACE_BYTES}")
    deep = '{"epochs": ' + "[" * 30_000 + "]" * 30_000 + "}"  # within the size bound
    assert len(deep) < MAX_SPACE_BYTES
    _refused(deep, f"nests deeper than {MAX_DEPTH} levels")
    path = tmp_path / "space.json"
    path.write_text(deep)
    _refused(str(path), f"space file {path} nests deeper")
    big = tmp_path / "big.json"
    big.write_text('{"lr": [' + "1e-4, " * 20_000 + "1e-4]}")
    _refused(str(big), f"space file {big} is over the {MAX_SPACE_BYTES} bytes")


def test_brackets_inside_strings_do_not_count_as_nesting():
    _refused('{"' + "[" * 50 + '": [8]}', "is not a setting a sweep may vary")
    _refused('{"lr\\"' + "{" * 50 + '": [8]}', "is not a setting a sweep may vary")


def test_unterminated_escapes_are_scanned_in_linear_time():
    # A regex that strips strings backtracks quadratically on this (seconds); the scan does not.
    _refused("{" + '"' + '\\"' * 21_000, "is not valid JSON")


@pytest.mark.parametrize(
    ("space", "parts"),
    [
        ('{"epochs": {"low": 1, "high": 1000000000000000000000}}', ("epochs high ~1e21 is out of range",)),
        ('{"epochs": [2, 1000001]}', ("epochs a choice 1000001 is out of range", "1,000,000")),
        ('{"batch_size": {"low": 8, "high": 64, "step": 2000000}}', ("batch_size step 2000000",)),
        ('{"lr": {"low": 1e-4, "high": 1e300, "log": true}}', ("lr high 1e+300 is out of range",)),
        ('{"lr": {"low": -1e7, "high": 1e-3}}', ("lr low -10000000.0 is out of range",)),
        ('{"epochs": {"low": 0, "high": 5}}', ("epochs=0 is invalid", "a positive number of epochs")),
        ('{"lr": {"low": 0, "high": 1e-3}}', ("lr=0.0 is invalid", "a positive learning rate")),
        ('{"samples_per_epoch": [64, -5]}', ("samples_per_epoch=-5 is invalid",)),
        ('{"lr": [1e-4, NaN]}', ("lr choices must be floats",)),
        ('{"lr": {"low": 1e-4, "high": Infinity}}', ("low, high and step must be floats",)),
    ],
)
def test_each_value_is_bounded_by_its_setting(space, parts):
    _refused(space, *parts)


def test_the_bounds_themselves_are_accepted():
    space = resolve_space(
        json.dumps({"epochs": {"low": 1, "high": MAX_INT}, "lr": {"low": 1e-9, "high": 1e6, "log": True}}),
        settings(),
        TRACKER,
        set(),
    )
    assert (space["epochs"].low, space["epochs"].high) == (1, MAX_INT) and space["lr"].high == 1e6


def test_python_ints_beyond_floats_are_refused_without_overflow():
    """parse_space takes JSON already parsed; a float setting's int range of 10^400 once overflowed
    in math.isfinite, and printing a 10^5000 int hits int()'s own digit limit."""
    for value in (10**400, -(10**5000)):
        with pytest.raises(ConfigError, match=r"^space: lr high -?~1e\d+ is out of range"):
            parse_space({"lr": {"low": 1e-4, "high": value}}, settings(), TRACKER, set())


@pytest.mark.parametrize(
    "given", ["x" * 5000, "space\0.json", "~/" + "d/" * 3000 + "s.json"], ids=["long", "nul", "deep"]
)
def test_a_hostile_path_is_one_line(given):
    message = _refused(given, "is neither JSON text nor an existing file")
    assert len(message) < 250


def test_a_space_file_that_is_not_text(tmp_path):
    path = tmp_path / "space.json"
    path.write_bytes(b"\xff\xfe{\x00")
    _refused(str(path), f"space file {path} is not UTF-8 text")


def test_the_sweep_command_refuses_before_any_trial(tmp_path, monkeypatch):
    """The reported case end to end: exit 2, one line, and nothing run or tracked."""
    import seqtrack_mlflow.workflows.sweep as sweep_step

    def no_trial(*args, **kwargs):
        raise AssertionError("a trial started")  # rather than 10^21 epochs should the check regress

    monkeypatch.setattr(sweep_step, "suggest", no_trial)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    path = tmp_path / "space.json"
    path.write_text('{"epochs": {"low": 1, "high": 1000000000000000000000}}')
    args = ["sweep", "--trials", "1", "--source", "synthetic", "--output_dir", str(tmp_path / "out")]
    result = CliRunner().invoke(main, [*args, "--device", "cpu", "--space", str(path)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["error: space: epochs high ~1e21 is out of range: a sweep keeps int settings within "
                     "+-1,000,000; use a smaller range"]  # fmt: skip
    assert not (tmp_path / "out").exists() and not (tmp_path / "mlflow.db").exists()
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["space.json"]
