"""How settings become MLflow params, and when a logged string and a value are the same setting."""

from __future__ import annotations

import pytest

from seqtrack_mlflow.tracking.params import (
    PARAM_VALUE_LIMIT,
    differing_params,
    param_str,
    params_to_log,
    same_param,
)


def test_param_str_is_the_canonical_spelling() -> None:
    assert param_str(None) == "none"
    assert param_str([1, "a"]) == "1,a" and param_str({"k": 1}) == '{"k": 1}'
    assert param_str(1e-4) == "0.0001" and param_str(True) == "true" and param_str(False) == "false"
    assert param_str("x") == "x"
    assert len(param_str("x" * (PARAM_VALUE_LIMIT + 10))) == PARAM_VALUE_LIMIT


@pytest.mark.parametrize(
    ("logged", "value"),
    [
        ("1e-4", 0.0001),  # `mlflow run -P lr=1e-4` vs the setting
        ("0.0001", "1e-4"),  # a queued param (already a string)
        ("8", 8),
        ("8.0", 8),
        ("true", True),
        ("False", False),
        ("TRUE", "true"),
        ("none", None),
        ("True", True),  # `mlflow run -P window_penalty=True`: kept as typed, never re-logged
        ("a,b", ["a", "b"]),
        ('["a", "b"]', ["a", "b"]),  # lists as this project logged them before (JSON)
    ],
)
def test_same_setting(logged: str, value: object) -> None:
    assert same_param(logged, value)


@pytest.mark.parametrize(
    ("logged", "value"),
    [
        ("2", 5),
        ("1e-4", 0.001),
        ("true", False),
        ("true", "1"),  # a boolean string is not a number
        ("abc", 1.0),
        ("abc", "abd"),
        ("1", None),
        ("[1]", [2]),
    ],
)
def test_different_setting(logged: str, value: object) -> None:
    assert not same_param(logged, value)


def test_params_to_log_keeps_held_keys_and_logs_changes_as_resumed() -> None:
    existing = {"lr": "1e-4", "epochs": "2", "resumed.epochs": "3"}
    params = {"lr": "0.0001", "epochs": "5", "seed": "8"}
    assert differing_params(existing, params) == {"epochs": "2"}
    # resumed.epochs is held already (an earlier resume): MLflow refuses a key twice, so it is not re-logged
    assert params_to_log(existing, params) == {"seed": "8"}
    assert params_to_log({"epochs": "2"}, params) == {"lr": "0.0001", "resumed.epochs": "5", "seed": "8"}
