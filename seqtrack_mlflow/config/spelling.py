"""The one string form of a setting's value (pure): what every run logs as the param, whichever entry
point started it, so MLflow's compare view ("show diff only") flags only settings that really differ.

The forms are the ones a user types with `-P` (and that `MLproject`'s defaults use): `true`/`false`,
`none` for unset, comma-joined lists without spaces, numbers as Python's shortest round-trip `repr`
(`0.0005`, `1e-05`, `8`). A run started by `main` is given its settings in these forms, so its params
equal those of the same step run on its own with the same settings.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

UNSET = "none"  # how the project spells an unset setting (MLproject's `pretrained=none`, `resume=none`)


def canonical(value: Any) -> str:
    """`value` in its one string form: None -> `none`; booleans -> `true`/`false`; integers -> `8`;
    other numbers -> `repr(float)` (`0.0005`, `1e-05`); lists and tuples -> items comma-joined in the
    given order (`airplane,guitar`); paths -> their text; mappings -> JSON; strings as given."""
    if value is None:
        return UNSET
    if isinstance(value, bool):  # before numbers: bool is an int
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    if isinstance(value, (list, tuple)):
        return ",".join(canonical(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(dict(value), sort_keys=True, default=canonical)
    if isinstance(value, PurePath):
        return str(value)
    return str(value)


def parsed(text: str, kind: type) -> Any:
    """The value of `kind` (bool, int, float, str) that `text` spells: the inverse of `canonical` for one
    setting, also reading what MLflow logged as a user typed it (`True`, `1e-4`); `none` is None.
    Raises ValueError for text that spells no such value."""
    word = text.strip()
    if word.lower() == UNSET and kind is not str:
        return None
    if kind is bool:
        if word.lower() not in ("true", "false"):
            raise ValueError(f"{text!r} is not true or false")
        return word.lower() == "true"
    return kind(word)
