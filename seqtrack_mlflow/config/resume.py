"""What a resumed training run may change: the settings declared `resume=True`, nothing else."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from seqtrack_mlflow.config.declare import ConfigError
from seqtrack_mlflow.config.declared import declared_settings, setting_names
from seqtrack_mlflow.config.presets import TrainSettings
from seqtrack_mlflow.config.settings import DataConfig, TrainConfig


def resume_overridable() -> tuple[str, ...]:
    """The settings a resume may change (the schedule's length and shape, where and how it runs, where
    the data lies); every other setting defines the model, the data or the optimisation."""
    return tuple(s.name for s in declared_settings() if s.resume)


def resumed_settings(
    saved: TrainSettings, epoch: int, given: dict[str, Any], source: str, *, finish: bool = False
) -> TrainSettings:
    """The checkpoint's settings (`saved`, at `epoch`), with the ones a resume may change applied where
    the user gave them.

    A given setting that defines the model, the data or the optimisation and differs from the
    checkpoint's is refused (one line listing every difference), and so is an `epochs` that leaves
    nothing to train, except with `finish`: a restarted job whose run was killed after its last
    checkpoint, before it ended, has its end still to log (`epochs` equal to the checkpoint's epoch)."""
    overridable = resume_overridable()
    values = saved.params()
    conflicts = [
        f"{k}={v!r} (checkpoint: {values[k]!r})"
        for k, v in given.items()
        if k in values and k not in overridable and not _same(v, values[k])
    ]
    if conflicts:
        raise ConfigError(
            f"resume {source}: {'; '.join(conflicts)}: these settings come from the checkpoint, "
            "drop them (or train a new run)"
        )
    keep = {k: given[k] for k in overridable if given.get(k) is not None}
    for s in declared_settings():
        # Folders are this machine's: its own variable wins over the path the checkpoint recorded on the
        # machine that wrote it (node 0 of a multi-node run, or another computer).
        if s.resume and s.env and s.name not in keep and os.environ.get(s.env):
            keep[s.name] = None  # unset: resolved from the variable, as in a fresh run
    train_names, data_names = setting_names(TrainConfig), setting_names(DataConfig)
    settings = dataclasses.replace(
        saved,
        train=dataclasses.replace(saved.train, **{k: v for k, v in keep.items() if k in train_names}),
        data=dataclasses.replace(saved.data, **{k: v for k, v in keep.items() if k in data_names}),
    )
    settings.train.validate()
    if settings.train.epochs < epoch or (settings.train.epochs == epoch and not finish):
        raise ConfigError(
            f"resume {source}: nothing to train: the checkpoint is at epoch {epoch} and epochs="
            f"{settings.train.epochs}: pass -P epochs=N with N > {epoch}"
        )
    return settings


def _same(given: Any, saved: Any) -> bool:
    if isinstance(saved, float) or isinstance(given, float):
        try:
            return float(given) == float(saved)
        except (TypeError, ValueError):
            return False
    return given == saved
