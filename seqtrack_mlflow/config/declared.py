"""The declared settings as one list: what the CLI, MLproject, the resume rule and the sweep read."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from seqtrack_mlflow.config.declare import Setting, fields_of
from seqtrack_mlflow.config.presets import PRESETS
from seqtrack_mlflow.config.settings import SETTINGS_CLASSES, RunConfig

# Variables that steer a process but are no setting of a run (they say how this machine works, not what
# the run computes): documented by `--help` beside the settings' own variables.
ENVIRONMENT = {
    "SEQTRACK_JPEG_DECODER": "region (default where the C decoder is built) or pil: how training crops "
    "are decoded (same crops either way)",
    "SEQTRACK_TRACKING_PROBE_S": "while the tracking server is away, ask it again this often (s, default 15)",
    "SEQTRACK_TRACKING_FINAL_WAIT_S": "at the end of a run, await an absent tracking server this long "
    "(s, default 60)",
}


def declared_settings() -> Iterator[Setting]:
    """Every settings field of every settings class, in declaration order."""
    for cls in SETTINGS_CLASSES:
        for f, plain in fields_of(cls):
            meta = f.metadata
            choices = tuple(sorted(PRESETS)) if (cls, f.name) == (RunConfig, "preset") else meta["choices"]
            yield Setting(
                f.name,
                cls,
                plain,
                f.default,
                meta["help"],
                meta["steps"],
                meta["preset"],
                meta["inherit"],
                choices,
                meta["unset"],
                meta["required"],
                meta["resume"],
                meta["sweep"],
                meta["env"],
                meta["step_help"],
            )


def step_settings(step: str) -> list[Setting]:
    """The settings `step` takes as options."""
    return [s for s in declared_settings() if step in s.steps]


def environment_help() -> str:
    """The environment variables a command reads: the settings' own, then the process-wide ones."""
    lines = [f"{s.env}: fills --{s.name} when it is not given" for s in declared_settings() if s.env]
    lines += [f"{name}: {text}" for name, text in ENVIRONMENT.items()]
    return "\n".join(lines)


def setting_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}
