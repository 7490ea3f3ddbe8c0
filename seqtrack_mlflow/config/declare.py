"""How a setting is declared: its default, help, entry points, and every rule about it in one place.

A setting is a field of a frozen settings dataclass made with `setting(...)`. Besides what the CLI and
MLproject generators need (help, steps, choices, what "unset" means), the declaration carries the rules
that other parts used to keep in lists of their own:
- `resume`: a resumed training run may change it (the schedule's length and shape, where and how it
  runs, where the data lies); every other setting comes from the checkpoint;
- `sweep`: a sweep may search it (False for settings that say where a trial runs or how it reports);
- `env`: the environment variable that fills it when unset (documented by `--help`);
- `check`: (predicate, what to use instead): `validate(cfg)` refuses a value that fails it in one line
  (a setting with `choices` and no check of its own must be one of them).
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

STEPS = ("main", "select_data", "train", "evaluate", "sweep", "track")
PRESET_STEPS = ("main", "train", "sweep")  # the steps that take a preset
TRAINING_STEPS = ("main", "train", "sweep")
DATA_STEPS = ("main", "select_data", "train", "evaluate", "sweep")
EVAL_STEPS = ("main", "evaluate", "sweep")
TRACK_STEPS = ("main", "evaluate", "sweep", "track")  # the tracker's own settings: evaluate and track

Check = tuple[Callable[[Any], bool], str]


class ConfigError(ValueError):
    """A user-facing settings mistake: one line naming the setting and the fix."""


def setting(
    default: Any,
    help: str,  # noqa: A002 - the click/argparse name
    *,
    steps: tuple[str, ...] = (),
    preset: bool = False,
    inherit: tuple[str, ...] = (),
    choices: tuple[str, ...] = (),
    unset: str = "",
    required: tuple[str, ...] = (),
    resume: bool = False,
    sweep: bool = True,
    env: str = "",
    check: Check | None = None,
    step_help: dict[str, str] | None = None,
) -> Any:
    """A settings field. `steps`: the entry points that take it as an option (empty: internal, set by
    presets only); `required`: those where it must be given. `unset`: what `None` means for a field
    whose own default is None. `step_help`: the help of the steps where the setting means more or other
    than `help` says (each command's `--help` shows its own, never another's). `resume`, `sweep`, `env`,
    `check`: the module docstring."""
    return dataclasses.field(
        default=default,
        metadata={
            "help": help,
            "steps": steps,
            "preset": preset,
            "inherit": inherit,
            "choices": choices,
            "unset": unset or (f"${env}" if env else ""),
            "required": required,
            "resume": resume,
            "sweep": sweep,
            "env": env,
            "check": check if check is not None or not choices else _one_of(choices),
            "step_help": tuple(sorted((step_help or {}).items())),
        },
    )


def _one_of(choices: tuple[str, ...]) -> Check:
    """The check of a setting with choices and no check of its own: one of them."""
    listed = ", ".join(choices[:-1]) + " or " + choices[-1] if len(choices) > 1 else choices[0]
    return (lambda v: v in choices, listed)


def data_setting(default: Any, help: str, **kwargs: Any) -> Any:  # noqa: A002
    """A data setting: taken by every entry point; unset in train/evaluate = the earlier run's value."""
    return setting(default, help, steps=DATA_STEPS, inherit=("train", "evaluate"), **kwargs)


@dataclass(frozen=True)
class Setting:
    """One declared setting, as the CLI, MLproject, resume and sweep rules see it."""

    name: str
    owner: type
    type: type  # int, float, bool or str
    default: Any
    help: str
    steps: tuple[str, ...]
    preset: bool
    inherit: tuple[str, ...]
    choices: tuple[str, ...]
    unset: str
    required: tuple[str, ...]
    resume: bool = False
    sweep: bool = True
    env: str = ""
    step_help: tuple[tuple[str, str], ...] = ()  # (step, its help) where it differs from `help`

    def help_in(self, step: str) -> str:
        """The help `step`'s options show: the step's own where it has one."""
        return dict(self.step_help).get(step, self.help)

    def default_in(self, step: str) -> Any:
        """The option's default in `step`: None where unset means the preset's or an earlier run's value."""
        if (self.preset and step in PRESET_STEPS) or step in self.inherit:
            return None
        return self.default

    def unset_meaning(self, step: str) -> str:
        if self.preset and step in PRESET_STEPS:
            return "the preset's value"
        if step in self.inherit:
            if step in ("evaluate", "track"):
                return "the training run's value"
            return "the resumed checkpoint's or the data run's value, else " + (
                self.unset or repr(self.default)
            )
        return self.unset

    def given(self, value: Any, step: str) -> bool:
        """Whether a command-line value was given by the user: set, and not the option's own default
        (`mlflow run` passes every MLproject default explicitly, so "on the command line" says nothing)."""
        return value is not None and value != self.default_in(step)


def plain_type(annotation: Any) -> type:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def fields_of(cls: type) -> list[tuple[dataclasses.Field, type]]:
    """A settings class's fields with their plain types (int, float, bool, str)."""
    hints = typing.get_type_hints(cls)
    return [(f, plain_type(hints[f.name])) for f in dataclasses.fields(cls)]


def check_fields(cfg: Any) -> None:
    """Refuse the first field of `cfg` whose declared `check` fails: one line naming it and the fix."""
    for f in dataclasses.fields(cfg):
        check = f.metadata.get("check")
        value = getattr(cfg, f.name)
        if check is not None and value is not None and not check[0](value):
            shown = value if str(value).strip() else repr(value)  # an empty name shows as ''
            raise ConfigError(f"{f.name}={shown} is invalid: use {check[1]}")


def env_name(cls: type, name: str) -> str:
    """The environment variable declared for setting `name` of `cls` ("" for none)."""
    return next(f.metadata["env"] for f in dataclasses.fields(cls) if f.name == name)


def env_value(cls: type, name: str) -> str | None:
    """The value of the variable declared for setting `name` of `cls`, where it is set and not empty."""
    var = env_name(cls, name)
    return (os.environ.get(var) or None) if var else None


class Validated:
    """`validate()`: every field's declared check (and a class's own cross-field rules, where it has them)."""

    def validate(self) -> None:
        check_fields(self)
