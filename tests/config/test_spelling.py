"""The one string form of a setting's value (`config/spelling.py`) and reading it back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seqtrack_mlflow.config.spelling import canonical, parsed


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "none"),
        (True, "true"),
        (False, "false"),
        (8, "8"),
        (np.int64(8), "8"),
        (0.0005, "0.0005"),  # repr: the shortest text that reads back as the same float
        (5e-4, "0.0005"),
        (1e-05, "1e-05"),
        (1.0, "1.0"),
        (np.float32(0.5), "0.5"),
        (["airplane", "guitar"], "airplane,guitar"),  # comma-joined in the given order, no spaces
        (("guitar", "airplane"), "guitar,airplane"),
        ([1, True, None], "1,true,none"),
        (Path("outputs/run"), "outputs/run"),
        ({"b": True, "a": 1}, '{"a": 1, "b": true}'),
        ("airplane,random", "airplane,random"),  # strings as given
        ("runs:/abc/checkpoints/epoch_1.ckpt", "runs:/abc/checkpoints/epoch_1.ckpt"),
    ],
)
def test_canonical(value: object, text: str) -> None:
    assert canonical(value) == text


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("true", bool, True),
        ("True", bool, True),  # as MLflow logged a user's `-P window_penalty=True`
        ("FALSE", bool, False),
        ("450", int, 450),
        ("1e-4", float, 0.0001),
        ("0.6", float, 0.6),
        ("fp32", str, "fp32"),
        ("none", int, None),
    ],
)
def test_parsed_reads_canonical_and_typed_spellings(text: str, kind: type, value: object) -> None:
    assert parsed(text, kind) == value


@pytest.mark.parametrize("value", [True, False, 0, 450, 0.6, 1e-05, 0.0005, "fp32"])
def test_parsed_inverts_canonical(value: object) -> None:
    assert parsed(canonical(value), type(value)) == value


@pytest.mark.parametrize(("text", "kind"), [("yes", bool), ("1", bool), ("x", int), ("1.5", int)])
def test_parsed_refuses_text_of_another_kind(text: str, kind: type) -> None:
    with pytest.raises(ValueError):
        parsed(text, kind)


def test_mlproject_defaults_are_logged_in_the_canonical_spelling() -> None:
    """`mlflow run` logs every declared default as MLproject spells it, before our code runs: in the
    canonical form, so a run given no -P reads as the same settings logged by a nested run."""
    import yaml

    from seqtrack_mlflow.config import STEPS, step_settings
    from seqtrack_mlflow.project_files import mlproject_text

    entry_points = yaml.safe_load(mlproject_text())["entry_points"]
    checked = 0
    for step in STEPS:
        declared = entry_points[step]["parameters"]
        for s in step_settings(step):
            default = s.default_in(step)
            if default is not None:
                assert str(declared[s.name]["default"]) == canonical(default), (step, s.name)
                checked += 1
    assert checked > 20
