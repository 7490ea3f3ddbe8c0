"""What a training run starts from, checked before the run exists: everything that can be refused
(device, shares, the checkpoint to resume and its settings, pretrained weights, the cost on this
machine, the data) is refused here in one line, so a refused command leaves no run behind."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqtrack_mlflow.config import ConfigError, TrainSettings, resumed_settings
from seqtrack_mlflow.datasets.selection import preflight
from seqtrack_mlflow.model.cost import check_run_cost
from seqtrack_mlflow.model.factory import check_fits
from seqtrack_mlflow.model.references import resolve_checkpoint, resolve_pretrained
from seqtrack_mlflow.tracking import resolve_data_run
from seqtrack_mlflow.train import checkpoints, distributed
from seqtrack_mlflow.train.checkpoints import Checkpoint


@dataclass(frozen=True)
class RunStart:
    """What a run starts from, once everything that can be refused has been checked."""

    settings: TrainSettings
    checkpoint: Checkpoint | None = None  # None: a fresh start
    checkpoint_file: Path | None = None  # where `checkpoint` was read (the store's file, in place)
    continue_run: str | None = None  # the run it continues
    pretrained_file: Path | None = None  # the file of weights named by a runs:/ or models:/ URI


def check_start(
    settings: TrainSettings,
    resume: str | None,
    data_run: str | None,
    given: dict[str, Any],
    output_dir: Path,
    ctx: distributed.DistContext,
    finish: bool = False,
) -> RunStart:
    """Everything that can be refused before a run starts (one line each): the device and shares, the
    checkpoint to resume and its settings (`finish`: a checkpoint at the last epoch is accepted), pretrained
    weights named by a runs:/ or models:/ URI, the cost on this machine, the data."""
    distributed.check_shares(settings.train.samples_per_epoch, ctx.world_size)
    if settings.train.amp and ctx.device.type != "cuda":
        raise ConfigError("amp=true needs a CUDA device: use -P amp=false on the CPU")
    ckpt, path, continue_run = None, None, None
    if resume:
        path, continue_run = resolve_checkpoint(resume, output_dir / "downloads" / f"rank{ctx.rank}")
        ckpt = checkpoints.load(path)
        check_fits(ckpt, path)  # before a model is built for it
        settings = resumed_settings(ckpt.settings, ckpt.epoch, given, resume, finish=finish)
    downloads = output_dir / "downloads" / f"rank{ctx.rank}"
    pretrained_file = resolve_pretrained(settings.model.pretrained or "none", downloads / "pretrained")
    estimate = check_run_cost(
        settings.model, settings.train, ctx.device, ctx.world_size, ckpt.epoch if ckpt else 0
    )
    if ctx.is_main:
        print(estimate, flush=True)  # (too big for this machine: refused above, one line)
    if data_run:
        resolve_data_run(data_run)  # a missing store or run is one line
    else:
        preflight(settings.data)
    return RunStart(settings, ckpt, path, continue_run, pretrained_file)
