"""How a setting becomes an MLflow param, and when two forms of it are the same setting (pure functions).

`mlflow run` logs every `-P` value as a string before our script starts, and MLflow refuses to log a
key twice with another string form (`1e-4` vs `0.0001`). So a run logs only the keys it does not hold
yet, and a value that really differs (a resumed run given a new `epochs`) under `resumed.<key>`.
What we log is `config.spelling.canonical` of the value: one form whichever entry point logs it, while a
key MLflow already logged as the user typed it (`-P window_penalty=True`) is kept, never re-logged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from seqtrack_mlflow.config.spelling import canonical

PARAM_VALUE_LIMIT = 6000  # MLflow's param value length limit


def param_str(value: Any) -> str:
    """The string we log for `value`: its canonical form (`config.spelling`), cut to MLflow's limit."""
    return canonical(value)[:PARAM_VALUE_LIMIT]


def same_param(logged: str, value: Any) -> bool:
    """`1e-4` and 0.0001, `true` and True, `8` and 8 are the same setting."""
    if logged == param_str(value):
        return True
    if isinstance(value, (list, tuple)):  # the JSON form this project logged lists in before
        return logged == json.dumps(list(value))
    if isinstance(value, bool):
        return logged.strip().lower() == str(value).lower()
    if isinstance(value, str):  # a queued param (already a string)
        a, b = logged.strip().lower(), value.strip().lower()
        if {a, b} & {"true", "false"}:
            return a == b
        try:
            return float(a) == float(b)
        except ValueError:
            return False
    if isinstance(value, (int, float)):
        try:
            return float(logged) == float(value)
        except ValueError:
            return False
    return False


def differing_params(existing: Mapping[str, str], params: Mapping[str, Any]) -> dict[str, str]:
    """{key: held value} for the keys of `params` the run holds with another value."""
    return {k: existing[k] for k, v in params.items() if k in existing and not same_param(existing[k], v)}


def params_to_log(existing: Mapping[str, str], params: Mapping[str, str]) -> dict[str, str]:
    """What to log of `params` on a run holding `existing`: the new keys, and `resumed.<key>` with the
    new value for a held key given another one (never a key the run holds: MLflow would refuse it)."""
    new = {k: v for k, v in params.items() if k not in existing}
    new.update(
        {f"resumed.{k}": v for k, v in params.items() if k in existing and not same_param(existing[k], v)}
    )
    return {k: v for k, v in new.items() if k not in existing}
