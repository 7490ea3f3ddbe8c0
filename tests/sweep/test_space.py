"""The sweep's search space: the default one fitted to the settings, one given as JSON text or a file,
and a bad space refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from factories import SWEEP_DATA, SWEEP_TRACKER, sweep_settings

from seqtrack_mlflow.config import ConfigError, build_settings
from seqtrack_mlflow.sweep.space import default_space, resolve_space


def test_default_space_fits_the_preset() -> None:
    space = default_space(sweep_settings(), SWEEP_TRACKER)
    assert list(space) == ["lr", "batch_size", "patch_size", "update_threshold"]
    assert space["lr"].log and (space["lr"].low, space["lr"].high) == pytest.approx((5e-5, 5e-3))
    assert space["batch_size"].choices == (4, 8, 16)
    assert space["patch_size"].choices == (8, 16)  # divide 32, at least a 2x2 grid
    assert (space["update_threshold"].low, space["update_threshold"].high) == (0.3, 0.9)
    # At the preset's crops (64-px templates, 128-px search): 8, 16 and 32; a given setting is not swept.
    tiny = build_settings("tiny", {}, {}, SWEEP_DATA)
    assert default_space(tiny, SWEEP_TRACKER)["patch_size"].choices == (8, 16, 32)
    assert "lr" not in default_space(tiny, SWEEP_TRACKER, fixed={"lr"})


def test_a_given_space_from_text_or_file(tmp_path: Path) -> None:
    settings = sweep_settings()
    space = resolve_space(
        '{"lr": {"low": 1e-4, "high": 1e-2, "log": true}, "patch_size": [8, 16]}',
        settings,
        SWEEP_TRACKER,
        set(),
    )
    assert list(space) == ["lr", "patch_size"] and space["patch_size"].kind == "categorical"
    path = tmp_path / "space.json"
    path.write_text(
        json.dumps({"epochs": {"low": 1, "high": 3}, "update_threshold": {"low": 0.4, "high": 0.8}})
    )
    space = resolve_space(str(path), settings, SWEEP_TRACKER, set())
    assert space["epochs"].kind == "int" and space["update_threshold"].kind == "float"


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ('{"lr": ', "is not valid JSON"),
        ("no/such/space.json", "neither JSON text nor an existing file"),
        ("[]", "non-empty JSON object"),
        ('{"classes": ["a"]}', "'classes' is not a setting a sweep may vary"),
        ('{"patch_size": [7, 8]}', "patch_size 7 does not divide template_size 32"),
        ('{"lr": {"low": 1e-2, "high": 1e-4}}', "needs low < high"),
        ('{"lr": {"low": 0, "high": 1e-2, "log": true}}', "log-uniform: it needs low > 0"),
        ('{"epochs": {"low": 2.5, "high": 8}}', "low, high and step must be ints"),
        ('{"lr": {"low": 1e-4}}', "needs both low and high"),
        ('{"lr": {"min": 1e-4, "max": 1}}', "unknown keys"),
        ('{"lr": [1e-4, -1.0]}', "lr=-1.0 is invalid"),
        ('{"batch_size": [8, 16]}', "batch_size is both given"),
    ],
)
def test_a_bad_space_is_one_line(space: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        resolve_space(space, sweep_settings(), SWEEP_TRACKER, {"batch_size"})
    assert "\n" not in str(err.value)
