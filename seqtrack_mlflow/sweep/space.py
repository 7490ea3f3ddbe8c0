"""The sweep's search space: the default one, reading and checking a user's, and drawing a trial's values.

A space maps setting names to dimensions, in JSON:

    {"lr": {"low": 1e-5, "high": 1e-3, "log": true},      a float range (log: log-uniform)
     "epochs": {"low": 2, "high": 6, "step": 2},           an int range (both bounds ints)
     "batch_size": {"choices": [8, 16, 32]},               a categorical
     "patch_size": [8, 16]}                                 a categorical, short form

A setting the sweep may vary is a model or training setting the preset decides, or a tracker setting;
the data, the seed and where things are written stay fixed across the trials of a study. Pure functions
(no MLflow, no Optuna study): `suggest` takes any object with Optuna's `suggest_*` methods.

A space may come from anywhere (a shared file), so it is bounded before it is believed: at most
`MAX_SPACE_BYTES` of JSON nested at most `MAX_DEPTH` deep (checked before parsing: json recurses once
per level), integers of at most `MAX_DIGITS` digits (checked as they are parsed, before int() sees
them), and every value of a dimension within `MAX_INT` (int settings) or `MAX_FLOAT` (float settings)
in magnitude, then through the setting's own validation at both ends of a range: without this a
`high` of 10^21 epochs started a trial.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqtrack_mlflow.config import (
    ConfigError,
    ModelConfig,
    TrackerConfig,
    TrainConfig,
    TrainSettings,
    declared_settings,
)

MAX_SPACE_BYTES = 64 << 10  # a real space is a few hundred bytes
MAX_DEPTH = 8  # a space needs 3: {setting: {"choices": [...]}}
MAX_DIGITS = 30  # of an integer in the JSON text
MAX_INT = 10**6  # |value| of an int setting's range or choice
MAX_FLOAT = 1e6  # |value| of a float setting's range or choice
_SPECIAL = re.compile(r'[\[\]{}"\\]')  # what decides JSON nesting: brackets, quotes, escapes
_FORM = 'write e.g. {"lr": {"low": 1e-5, "high": 1e-3, "log": true}}'


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shown(value: Any) -> str:
    """A value for a message, without printing (or int()-formatting) thousands of digits."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**15:
        return f"{'-' if value < 0 else ''}~1e{int(abs(value).bit_length() * math.log10(2))}"
    return _clip(json.dumps(value) if isinstance(value, (list, dict)) else str(value))


def sweepable() -> dict[str, type]:
    """The settings a space may name, with their types."""
    out: dict[str, type] = {}
    for s in declared_settings():
        if not s.sweep or s.type not in (int, float):
            continue
        if (s.preset and "sweep" in s.steps) or (s.owner is TrackerConfig and "sweep" in s.steps):
            out[s.name] = s.type
    return out


@dataclass(frozen=True)
class Dimension:
    """One swept setting: a range (`low`..`high`, `log`, `step`) or `choices`."""

    name: str
    kind: str  # "float", "int" or "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def to_json(self) -> Any:
        if self.kind == "categorical":
            return {"choices": list(self.choices)}
        spec: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            spec["log"] = True
        if self.step is not None:
            spec["step"] = self.step
        return spec


Space = dict[str, Dimension]


def divisor_patches(sizes: tuple[int, ...], lo: int = 8, hi: int = 32, min_grid: int = 2) -> list[int]:
    """Patch sizes in [lo, hi] that divide every crop size and leave at least a min_grid x min_grid grid."""
    return [p for p in range(lo, hi + 1) if all(s % p == 0 and s // p >= min_grid for s in sizes)]


def default_space(settings: TrainSettings, tracker: TrackerConfig, fixed: set[str] = frozenset()) -> Space:
    """The documented default space around the preset's values (README, "Sweeps"):

    - lr: log-uniform over [lr / 10, lr * 10];
    - batch_size: one of lr's batch size / 2, x 1, x 2;
    - patch_size: the divisors of both crop sizes between 8 and 32 leaving at least a 2 x 2 grid, when
      there are two or more and the encoder trains from scratch (a pretrained encoder keeps its patch);
    - update_threshold: uniform over [0.3, 0.9].

    Settings in `fixed` (given explicitly, as with `-P lr=...`) keep their value and are not swept."""
    model, train = settings.model, settings.train
    space: Space = {
        "lr": Dimension("lr", "float", train.lr / 10, train.lr * 10, log=True),
        "batch_size": Dimension(
            "batch_size",
            "categorical",
            choices=tuple(sorted({max(1, train.batch_size // 2), train.batch_size, train.batch_size * 2})),
        ),
        "update_threshold": Dimension("update_threshold", "float", 0.3, 0.9),
    }
    patches = divisor_patches((model.template_size, model.search_size))
    if model.pretrained == "none" and len(patches) >= 2:
        space["patch_size"] = Dimension("patch_size", "categorical", choices=tuple(patches))
    order = ("lr", "batch_size", "patch_size", "update_threshold")
    return {k: space[k] for k in order if k in space and k not in fixed}


def _depth(text: str) -> int:
    """How deep JSON text nests (brackets inside strings do not count); one linear pass."""
    depth = deepest = 0
    in_string, skip = False, -1
    for match in _SPECIAL.finditer(text):
        char, at = match.group(), match.start()
        if at == skip:  # escaped by the backslash before it
            continue
        if in_string:
            if char == "\\":
                skip = at + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _read_file(path: Path) -> str:
    """The file's text; its size is checked first (a space file may come from anyone)."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_SPACE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read space file {path} ({exc.strerror}): check the path") from None
    if len(data) > MAX_SPACE_BYTES:
        raise ConfigError(
            f"space file {path} is over the {MAX_SPACE_BYTES} bytes a space may have: "
            "name only the settings to sweep"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"space file {path} is not UTF-8 text: {_FORM}") from None


def read_space(text: str) -> dict[str, Any]:
    """`space` as given: a JSON file's path or JSON text -> the JSON object (bounded: module docstring)."""
    text = text.strip()
    source = "the space"
    if not text.startswith(("{", "[")):
        path = Path(text).expanduser()
        try:
            found = path.is_file()
        except (OSError, ValueError):  # a name too long for the file system, a NUL character
            found = False
        if not found:
            raise ConfigError(
                f"space={_clip(repr(text))} is neither JSON text nor an existing file: pass a JSON object "
                "or the path of a .json file"
            )
        source, text = f"space file {path}", _read_file(path)
    if len(text) > MAX_SPACE_BYTES:
        raise ConfigError(
            f"{source} has {len(text)} characters, over the {MAX_SPACE_BYTES} a space may have: "
            "name only the settings to sweep"
        )
    if _depth(text) > MAX_DEPTH:
        raise ConfigError(f"{source} nests deeper than {MAX_DEPTH} levels: a space needs 3; {_FORM}")

    def bounded_int(digits: str) -> int:
        if len(digits.lstrip("-")) > MAX_DIGITS:
            raise ConfigError(
                f"{source} holds an integer of {len(digits.lstrip('-'))} digits: sweep values stay within "
                f"+-{MAX_INT:,} (int settings) and +-{MAX_FLOAT:,.0f} (float settings)"
            )
        return int(digits)

    try:
        raw = json.loads(text, parse_int=bounded_int)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{source} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): {_FORM}"
        ) from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{source} must be a non-empty JSON object: {{setting: dimension, ...}}")
    return raw


def parse_space(
    raw: dict[str, Any], settings: TrainSettings, tracker: TrackerConfig, fixed: set[str]
) -> Space:
    """Check a user's space, one line per mistake: known sweepable names, well-formed dimensions, values
    the settings validation accepts (patch sizes that divide the crops, positive rates...)."""
    names = sweepable()
    space: Space = {}
    for name, spec in raw.items():
        if name not in names:
            close = ", ".join(sorted(names))
            raise ConfigError(
                f"space: {_clip(repr(name))} is not a setting a sweep may vary: use some of {close}"
            )
        if name in fixed:
            raise ConfigError(f"space: {name} is both given (-P {name}=...) and swept: drop one of the two")
        space[name] = _dimension(name, spec, names[name])
    for dim in space.values():
        for value in _corners(dim):
            check_values({dim.name: value}, settings, tracker)
    return space


def _dimension(name: str, spec: Any, kind: type) -> Dimension:
    form = '{"low": L, "high": H} (optional "log": true, "step": S) or {"choices": [...]} or [...]'
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"space: {name} must be {form}, got {_shown(spec)}")
    unknown = set(spec) - {"low", "high", "log", "step", "choices"}
    if unknown:
        raise ConfigError(f"space: {name} has unknown keys {sorted(unknown)}: use {form}")
    if "choices" in spec:
        choices = spec["choices"]
        if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
            raise ConfigError(f"space: {name} needs a non-empty list of choices and nothing else: {form}")
        if not all(_number_of(kind, c) for c in choices):
            raise ConfigError(f"space: {name} choices must be {kind.__name__}s, got {_shown(choices)}")
        for choice in choices:
            _check_magnitude(name, kind, "a choice", choice)
        return Dimension(name, "categorical", choices=tuple(kind(c) for c in choices))
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"space: {name} needs both low and high: {form}")
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    if not (_number_of(kind, low) and _number_of(kind, high)) or (
        step is not None and not _number_of(kind, step)
    ):
        raise ConfigError(
            f"space: {name} is a{'n' if kind is int else ''} {kind.__name__} setting: low, high "
            f"and step must be {kind.__name__}s"
        )
    for what, value in (("low", low), ("high", high), ("step", step)):
        if value is not None:
            _check_magnitude(name, kind, what, value)
    if not isinstance(log, bool):
        raise ConfigError(f"space: {name} log must be true or false")
    if not low < high:
        raise ConfigError(f"space: {name} needs low < high, got low={low} high={high}")
    if log and (low <= 0 or step is not None):
        raise ConfigError(f"space: {name} is log-uniform: it needs low > 0 and no step")
    if step is not None and step <= 0:
        raise ConfigError(f"space: {name} step must be positive, got {step}")
    return Dimension(name, kind.__name__, kind(low), kind(high), log, None if step is None else kind(step))


def _check_magnitude(name: str, kind: type, what: str, value: int | float) -> None:
    """ConfigError unless |value| is within the sweep's bound for the setting's type (exact for ints
    of any size: Python compares int with float without converting)."""
    limit = MAX_INT if kind is int else MAX_FLOAT
    if abs(value) > limit:
        raise ConfigError(
            f"space: {name} {what} {_shown(value)} is out of range: a sweep keeps {kind.__name__} settings "
            f"within +-{limit:,.0f}; use a smaller range"
        )


def _number_of(kind: type, value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if kind is int:
        return isinstance(value, int)
    if isinstance(value, int):  # math.isfinite(int) converts: an int over 1e308 would overflow
        return True
    return isinstance(value, float) and math.isfinite(value)


def _corners(dim: Dimension) -> tuple[Any, ...]:
    return dim.choices if dim.kind == "categorical" else (dim.low, dim.high)


def check_values(values: dict[str, Any], settings: TrainSettings, tracker: TrackerConfig) -> None:
    """Raise ConfigError (naming the setting) if these values would make invalid settings."""
    try:
        apply_values(values, settings, tracker)
    except ConfigError as exc:
        raise ConfigError(f"space: {exc}") from None


def resolve_space(
    given: str | None, settings: TrainSettings, tracker: TrackerConfig, fixed: set[str]
) -> Space:
    """The user's space (`-P space=`), else the default one for these settings."""
    if given:
        return parse_space(read_space(given), settings, tracker, fixed)
    space = default_space(settings, tracker, fixed)
    if not space:
        raise ConfigError("the default space is empty (every setting in it was given): pass -P space=...")
    return space


def space_json(space: Space) -> dict[str, Any]:
    return {name: dim.to_json() for name, dim in space.items()}


def suggest(trial: Any, space: Space) -> dict[str, Any]:
    """Draw one value per dimension with an Optuna trial (suggest_float/int/categorical)."""
    values: dict[str, Any] = {}
    for name, dim in space.items():
        if dim.kind == "categorical":
            values[name] = trial.suggest_categorical(name, list(dim.choices))
        elif dim.kind == "int":
            values[name] = trial.suggest_int(
                name, int(dim.low), int(dim.high), step=int(dim.step or 1), log=dim.log
            )
        else:
            values[name] = trial.suggest_float(name, dim.low, dim.high, step=dim.step, log=dim.log)
    return values


def apply_values(
    values: dict[str, Any], settings: TrainSettings, tracker: TrackerConfig
) -> tuple[TrainSettings, TrackerConfig]:
    """A trial's settings: `values` applied to the sweep's base settings, validated."""
    parts = {}
    for cls in (ModelConfig, TrainConfig, TrackerConfig):
        parts[cls] = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
    model = dataclasses.replace(settings.model, **parts[ModelConfig])
    train = dataclasses.replace(settings.train, **parts[TrainConfig])
    tracker = dataclasses.replace(tracker, **parts[TrackerConfig])
    model.validate()
    train.validate()
    tracker.validate()
    return dataclasses.replace(settings, model=model, train=train), tracker


__all__ = [
    "MAX_DEPTH",
    "MAX_FLOAT",
    "MAX_INT",
    "MAX_SPACE_BYTES",
    "Dimension",
    "Space",
    "apply_values",
    "default_space",
    "divisor_patches",
    "parse_space",
    "read_space",
    "resolve_space",
    "space_json",
    "suggest",
    "sweepable",
]
