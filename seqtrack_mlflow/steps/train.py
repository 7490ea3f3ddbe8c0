"""The train step: settings -> data selection -> Trainer, with MLflow bookkeeping and resume."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.distributed as dist

from seqtrack_mlflow.config import ConfigError, TrainSettings
from seqtrack_mlflow.steps.select_data import Selection, log_selection, preflight, select
from seqtrack_mlflow.tracking import RunLogger, git_commit, run_context
from seqtrack_mlflow.train import checkpoints, distributed
from seqtrack_mlflow.train.artifacts import environment_requirements, plot_training_curves
from seqtrack_mlflow.train.trainer import Trainer, TrainOutcome

# Settings a resumed run may change; everything else comes from the checkpoint.
RESUME_OVERRIDABLE = ("epochs", "device", "workers", "log_every", "system_metrics", "amp")


@dataclass(frozen=True)
class TrainResult:
    run_id: str | None
    outcome: TrainOutcome
    settings: TrainSettings
    selection: Selection
    out_dir: Path


def resumed_settings(state: dict[str, Any], requested: TrainSettings, epochs_given: bool) -> TrainSettings:
    """The checkpoint's settings, with the few run-level ones the user may change on resume."""
    saved = TrainSettings.from_dict(state["config"])
    keep = {k: getattr(requested.train, k) for k in RESUME_OVERRIDABLE if k != "epochs"}
    if epochs_given:
        keep["epochs"] = requested.train.epochs
    return dataclasses.replace(saved, train=dataclasses.replace(saved.train, **keep))


def run_train(
    settings: TrainSettings,
    *,
    resume: str = "",
    epochs_given: bool = True,
    output_dir: Path = Path("outputs"),
    nested: bool = False,
) -> TrainResult:
    ctx = distributed.setup(settings.train.device)
    try:
        distributed.check_shares(settings.train.samples_per_epoch, ctx.world_size)
        if settings.train.amp and ctx.device.type != "cuda":
            raise ConfigError("amp=true needs a CUDA device: use -P amp=false on the CPU")
        state, continue_run = None, None
        if resume:
            path, continue_run = checkpoints.resolve_checkpoint(
                resume, output_dir / "downloads" / f"rank{ctx.rank}"
            )
            state = checkpoints.load_checkpoint(path)
            settings = resumed_settings(state, settings, epochs_given)
        preflight(settings.data)
        env_run = os.environ.get("MLFLOW_RUN_ID")
        with run_context(
            "train",
            run_id=continue_run,
            nested=nested,
            system_metrics=settings.train.system_metrics,
            enabled=ctx.is_main,
        ) as logger:
            if continue_run and env_run and env_run != continue_run:
                RunLogger(env_run).set_tags({"seqtrack.continued_in": continue_run})
            return _train_in_run(settings, state, resume, logger, ctx, output_dir)
    finally:
        distributed.teardown()


def _train_in_run(
    settings: TrainSettings,
    state: dict[str, Any] | None,
    resume: str,
    logger: RunLogger,
    ctx: distributed.DistContext,
    output_dir: Path,
) -> TrainResult:
    out_dir = output_dir / (logger.run_id or "offline")
    if ctx.distributed:
        out_dir = output_dir / _broadcast_name(out_dir.name, ctx)
    selection = _select_once(settings, out_dir, ctx)
    sequences = selection.sequences("train")
    if not sequences:
        raise ConfigError(
            f"the classes {selection.classes} have no training sequences: choose other -P classes"
        )
    differing = logger.log_params(settings.params())
    logger.set_tags(
        {
            "seqtrack.preset": settings.preset,
            "seqtrack.device": str(ctx.device),
            "seqtrack.world_size": ctx.world_size,
            "seqtrack.git_commit": git_commit(),
            **({"seqtrack.resumed_from": resume} if resume else {}),
            **({"seqtrack.placeholder_params": ",".join(sorted(differing))} if differing else {}),
        }
    )
    log_selection(selection, logger, out_dir, save_index=False)
    trainer = Trainer(settings, sequences, out_dir, logger, ctx, selection.info)
    if state is not None:
        trainer.load_state(state)
        if ctx.is_main and logger.run_id and logger.run_id == state.get("mlflow_run_id"):
            _fetch_previous_log(logger.run_id, out_dir)
    log_path = out_dir / "training_log.txt"

    def publish(ckpt: Path) -> None:
        logger.log_artifact(ckpt, checkpoints.CHECKPOINT_DIR)
        logger.log_artifact(log_path)

    outcome = trainer.fit(on_checkpoint=publish)
    if ctx.is_main and logger.enabled:
        logger.log_dict(settings.to_dict(), "config.json")
        (out_dir / "requirements.txt").write_text(environment_requirements())
        logger.log_artifact(out_dir / "requirements.txt")
        h = outcome.history
        if h.steps:
            logger.log_artifact(plot_training_curves(h.steps, h.loss, h.iou, out_dir / "training_curves.png"))
        if log_path.exists():
            logger.log_artifact(log_path)
    return TrainResult(logger.run_id, outcome, settings, selection, out_dir)


def _select_once(settings: TrainSettings, out_dir: Path, ctx: distributed.DistContext) -> Selection:
    """Rank 0 prepares the data (download / generation) first; the others then find it cached."""
    if ctx.distributed and not ctx.is_main:
        dist.barrier()
        return select(settings.data, settings.train.seed, None)
    selection = select(settings.data, settings.train.seed, out_dir)
    if ctx.distributed:
        dist.barrier()
    return selection


def _broadcast_name(name: str, ctx: distributed.DistContext) -> str:
    """Every rank writes under rank 0's run folder name."""
    holder = [name if ctx.is_main else None]
    dist.broadcast_object_list(holder, src=0)
    return str(holder[0])


def _fetch_previous_log(run_id: str, out_dir: Path) -> None:
    """Continue the run's training_log.txt instead of starting a new one that would replace it."""
    if (out_dir / "training_log.txt").exists():
        return
    import mlflow

    try:
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="training_log.txt", dst_path=str(out_dir)
        )
    except Exception:  # noqa: BLE001 - an older run without the file: start a fresh log
        return
