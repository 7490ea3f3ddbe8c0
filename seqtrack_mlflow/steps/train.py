"""The train step: settings -> data (a select_data run's index, or its own selection) -> Trainer, with
the MLflow bookkeeping (params, tags, metrics and artifacts through the trainer's callbacks) and resume.
At the end the final tracker is logged as the run's MLflow model `model` (`tracking/tracker_model.py`)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.distributed as dist

from seqtrack_mlflow.config import ConfigError, DataConfig, TrackerConfig, TrainSettings
from seqtrack_mlflow.config.job_key import AUTO
from seqtrack_mlflow.datasets.base import Sequence
from seqtrack_mlflow.datasets.mix import LASOT, is_mix
from seqtrack_mlflow.datasets.selection import (
    Selection,
    check_same_data,
    select,
    used_data_settings,
)
from seqtrack_mlflow.evaluation.predict import model_config, settings_from_params
from seqtrack_mlflow.inputs.pools import Mix, SamplePool
from seqtrack_mlflow.messages import first_line
from seqtrack_mlflow.model.references import checkpoint_uri
from seqtrack_mlflow.steps.job_resume import resolve_auto
from seqtrack_mlflow.steps.lineage import log_selection, selection_from_run
from seqtrack_mlflow.steps.train_callbacks import MlflowCallbacks
from seqtrack_mlflow.steps.train_start import check_start
from seqtrack_mlflow.tracking import (
    RunLogger,
    fetch_artifact,
    git_commit,
    job_tags,
    last_metric_step,
    owned_run,
    run_context,
    run_params,
    stored_file,
)
from seqtrack_mlflow.tracking.health import say
from seqtrack_mlflow.train import checkpoints, distributed
from seqtrack_mlflow.train.artifacts import environment_requirements, plot_training_curves
from seqtrack_mlflow.train.callbacks import Chain, TrainerCallbacks
from seqtrack_mlflow.train.checkpoints import Checkpoint
from seqtrack_mlflow.train.interrupt import Interrupted
from seqtrack_mlflow.train.trainer import History, Trainer, TrainOutcome

LOG_FILE = "training_log.txt"


@dataclass(frozen=True)
class TrainResult:
    run_id: str | None
    outcome: TrainOutcome
    settings: TrainSettings
    selection: Selection
    out_dir: Path

    @property
    def checkpoint_ref(self) -> str:
        """How a later step names the last checkpoint: its runs:/ URI (the local file without a run)."""
        if self.outcome.checkpoint is None:
            raise RuntimeError("training wrote no checkpoint")
        if self.run_id:
            return checkpoint_uri(self.run_id, checkpoints.checkpoint_name(self.outcome.epochs_done))
        return str(self.outcome.checkpoint)


def run_train(
    settings: TrainSettings,
    *,
    resume: str | None = None,
    data_run: str | None = None,
    given: dict[str, Any] | None = None,
    output_dir: Path = Path("outputs"),
    nested: bool = False,
    callbacks: TrainerCallbacks | None = None,
    on_run: Callable[[RunLogger], None] | None = None,
    tracker: TrackerConfig | None = None,
    run_key: str | None = None,
    finish: bool = False,
) -> TrainResult:
    """`resume`: as the setting says; `auto` continues the job `run_key`'s unfinished run
    (`job_resume`). `run_key`: this job's key (`config.job_key`), tagged on the run. `given`: the
    settings the user gave explicitly (resume applies those it may change; with
    `data_run`, given data settings must agree with the data run's). `callbacks`: called after the
    run's own (a sweep's pruning); `on_run(logger)`: once the run has started (a sweep tags it).
    `tracker`: the tracker settings the logged model keeps (main's and a sweep trial's; default: a
    continued run's earlier ones, else the official ones). `finish`: a restarted job (main's resume=auto)
    whose run was killed after its last checkpoint, before it ended, logs its end from that checkpoint
    instead of refusing "nothing to train" (train's own resume=auto does so too)."""
    given = given or {}
    ctx = distributed.setup(settings.train.device)
    try:
        auto = resolve_auto(run_key, "train", ctx) if resume == AUTO else None
        target = auto.resume if auto else resume
        start = check_start(settings, target, data_run, given, output_dir, ctx, finish or auto is not None)
        settings, ckpt = start.settings, start.checkpoint
        continue_run = start.continue_run or (auto.restart if auto else None)
        env_run = os.environ.get("MLFLOW_RUN_ID")
        # One process per run: a run being resumed is claimed before it is reopened (a refused process
        # must not touch it), a new one as soon as it exists (nobody else knows it yet: no settling).
        resumed_owner = (
            # A restarted job (train's resume=auto; a nested train run is only resumed by a restarted
            # main job) waits out the claim of its previous start, killed on another node.
            owned_run(continue_run, wait=auto is not None or nested)
            if continue_run and ctx.is_main
            else contextlib.nullcontext()
        )
        run = run_context(
            "train",
            run_id=continue_run,
            nested=nested,
            system_metrics=settings.train.system_metrics,
            enabled=ctx.is_main,
        )
        with resumed_owner, run as logger, _resume_hint(logger, auto=auto is not None):
            if continue_run and env_run and env_run != continue_run and not nested:  # (main tags its own)
                RunLogger(env_run).set_tags({"seqtrack.continued_in": continue_run})
            if run_key and not nested:
                logger.set_tags(job_tags(run_key, "train"))
            new_owner = owned_run(logger.run_id, settle=0.0) if logger.run_id and not continue_run else None
            with new_owner or contextlib.nullcontext():
                if on_run is not None:
                    on_run(logger)
                run_values = {
                    "resume": resume,
                    "run_key": run_key,
                    "data": data_run,
                    "output_dir": str(output_dir),
                }
                result = _train_in_run(
                    settings,
                    ckpt,
                    run_values,
                    given,
                    logger,
                    ctx,
                    output_dir,
                    callbacks,
                    pretrained_file=start.pretrained_file,
                    checkpoint_file=start.checkpoint_file,
                    tracker=tracker,
                    resumed_from=(auto.run_id if auto else resume) if continue_run or ckpt else None,
                )
        return _where_stored(result)  # the run ended: everything logged has been sent
    finally:
        distributed.teardown()


@contextlib.contextmanager
def _resume_hint(logger: RunLogger, *, auto: bool = False) -> Iterator[None]:
    """A run stopped by a signal ends with the command that continues it (`auto`: the same command)."""
    try:
        yield
    except Interrupted as exc:
        target = logger.run_id or "<the checkpoint above>"
        again = "; or start the same command again (resume=auto continues this run)" if auto else ""
        raise Interrupted(
            exc.signum,
            f"{exc}; resume with: mlflow run . -e train -P resume={target}  "
            f"(or seqtrack-mlflow train --resume {target}){again}",
        ) from None


def _train_in_run(
    settings: TrainSettings,
    ckpt: Checkpoint | None,
    run_values: dict[str, Any],
    given: dict[str, Any],
    logger: RunLogger,
    ctx: distributed.DistContext,
    output_dir: Path,
    extra: TrainerCallbacks | None = None,
    *,
    pretrained_file: Path | None,
    checkpoint_file: Path | None,
    tracker: TrackerConfig | None,
    resumed_from: str | None,
) -> TrainResult:
    out_dir = output_dir / (logger.run_id or "offline")
    if ctx.distributed:
        out_dir = output_dir / _broadcast_name(out_dir.name, ctx)
    logger.local_dir = out_dir  # holds what could not be uploaded if the tracking server goes away
    selection = _select_once(settings, run_values["data"], given, out_dir, ctx)
    fresh_from_data_run = bool(run_values["data"]) and ckpt is None
    settings = _with_data_of(
        settings, selection, fresh_from_data_run, seed_given=given.get("seed") is not None
    )
    sequences = training_data(selection)
    _log_start(logger, settings, run_values, selection, ctx, out_dir, resumed_from)
    log_path = out_dir / LOG_FILE
    resumed = resumed_from is not None and bool(logger.run_id)
    resumed_here = ckpt is not None and bool(logger.run_id) and logger.run_id == ckpt.mlflow_run_id
    if resumed_here and ctx.is_main and not log_path.exists():
        # Continue the run's training log instead of starting one that would replace it.
        fetch_artifact(logger.run_id, LOG_FILE, out_dir)
    if ckpt is not None and checkpoint_file is not None and ckpt.epoch >= settings.train.epochs:
        outcome = _trained_already(ckpt, checkpoint_file, logger.run_id)
    else:
        own = MlflowCallbacks(
            logger,
            log_path,
            last_metric_step(logger.run_id, "loss") if resumed else -1,
            last_metric_step(logger.run_id, "epoch_loss") if resumed else -1,
            keep=settings.train.keep_checkpoints,
            last_name=checkpoints.checkpoint_name(settings.train.epochs),
            ious=dict(enumerate(ckpt.history.get("epoch_iou", []), start=1)) if ckpt is not None else None,
        )
        trainer = Trainer(
            settings,
            sequences,
            out_dir,
            ctx,
            selection.info,
            callbacks=Chain(own, *([extra] if extra is not None else [])),
            run_id=logger.run_id or "",
            pretrained_file=pretrained_file,
        )
        if ckpt is not None:
            trainer.load_state(ckpt)
        outcome = trainer.fit()
    _log_end(logger, settings, selection, outcome, ctx, out_dir, log_path)
    if ctx.is_main:
        _log_tracker(logger, outcome, tracker or _run_tracker(logger, resumed))
    return TrainResult(logger.run_id, outcome, settings, selection, out_dir)


def _trained_already(ckpt: Checkpoint, path: Path, run_id: str | None) -> TrainOutcome:
    """A run killed after its last checkpoint, before it ended (a restarted job finds it so): nothing is
    left to train; its end (curves, log, model) is logged from that checkpoint, read where it lies."""
    say(
        f"resume: run {run_id}'s checkpoint is at its last epoch ({ckpt.epoch}): nothing left to train, "
        "logging the run's end from it"
    )
    return TrainOutcome(ckpt.epoch, ckpt.loss, ckpt.iou, path, History(**ckpt.history))


def _where_stored(result: TrainResult) -> TrainResult:
    """The result naming the last checkpoint where it now lies: in a local artifact store once its
    local copy was released (see `MlflowCallbacks`), else where it was written."""
    path = result.outcome.checkpoint
    if path is None or path.exists() or not result.run_id:
        return result
    stored = stored_file(result.run_id, f"{checkpoints.CHECKPOINT_DIR}/{path.name}")
    if stored is None:
        return result
    return dataclasses.replace(result, outcome=dataclasses.replace(result.outcome, checkpoint=stored))


def training_data(selection: Selection) -> list[Sequence] | Mix:
    """What the trainer samples from: the LaSOT classes' training sequences (the default), or a `Mix`
    of every dataset of `-P datasets`, each with its ratio."""
    lasot = selection.sequences("train") if LASOT in selection.data.mix else []
    if LASOT in selection.data.mix and not lasot:
        raise ConfigError(
            f"the classes {selection.classes} have no training sequences: choose other -P classes"
        )
    if not is_mix(selection.data):
        return lasot
    parts = {part.name: part for part in selection.parts}
    pools = [
        SamplePool(name, lasot, ratio)
        if name == LASOT
        else SamplePool(name, parts[name].sequences(selection.data), ratio, parts[name].images)
        for name, ratio in zip(selection.data.mix, selection.data.ratios, strict=True)
    ]
    return Mix(tuple(pools))


def _with_data_of(
    settings: TrainSettings, selection: Selection, fresh_from_data_run: bool, *, seed_given: bool
) -> TrainSettings:
    """The data settings as used; on a fresh start from a data run, an unset seed is that run's (as in
    `main`, where one seed drives every step)."""
    settings = dataclasses.replace(settings, data=used_data_settings(selection.data))
    if fresh_from_data_run and not seed_given:
        seed = int(selection.summary["seed"])
        settings = dataclasses.replace(settings, train=dataclasses.replace(settings.train, seed=seed))
    return settings


def _log_start(
    logger: RunLogger,
    settings: TrainSettings,
    run_values: dict[str, Any],
    selection: Selection,
    ctx: distributed.DistContext,
    out_dir: Path,
    resumed_from: str | None,
) -> None:
    differing = logger.log_params({**settings.params(), **run_values})
    logger.set_tags(
        {
            "seqtrack.preset": settings.preset,
            "seqtrack.device": str(ctx.device),
            "seqtrack.world_size": ctx.world_size,
            "seqtrack.git_commit": git_commit(),
            **({"seqtrack.resumed_from": resumed_from} if resumed_from else {}),
            **({"seqtrack.resumed_settings": ",".join(sorted(differing))} if differing else {}),
        }
    )
    log_selection(selection, logger, out_dir, context="training", save_index=False)


def _log_end(
    logger: RunLogger,
    settings: TrainSettings,
    selection: Selection,
    outcome: TrainOutcome,
    ctx: distributed.DistContext,
    out_dir: Path,
    log_path: Path,
) -> None:
    """The run's description, resolved config, environment, curves and the final training log."""
    logger.describe(
        f"Trained SeqTrack {settings.preset} (patch {settings.model.patch_size}, "
        f"{settings.model.num_tokens} tokens) for {settings.train.epochs} epochs of "
        f"{settings.train.samples_per_epoch} samples on {_trained_on(selection)}: "
        f"final loss {outcome.final_loss:.3f}, IoU {outcome.final_iou:.3f}"
    )
    if not (ctx.is_main and logger.enabled):
        return
    logger.log_dict(settings.to_dict(), "config.json")
    (out_dir / "requirements.txt").write_text(environment_requirements())
    logger.log_artifact(out_dir / "requirements.txt")
    h = outcome.history
    if h.steps:
        curves = out_dir / "training_curves.png"
        logger.log_artifact(plot_training_curves(h.steps, h.loss, h.iou, curves, selection.label))
    if log_path.exists():
        logger.log_artifact(log_path)


def _run_tracker(logger: RunLogger, resumed: bool) -> TrackerConfig:
    """The tracker settings of a continued run's earlier model (a resumed `main` run keeps main's), else
    the official ones."""
    earlier = settings_from_params(run_params(logger.run_id)) if resumed and logger.run_id else None
    return earlier or TrackerConfig()


def _log_tracker(logger: RunLogger, outcome: TrainOutcome, tracker: TrackerConfig) -> None:
    """The final checkpoint as the run's MLflow model `model`, with the tracker settings `tracker`
    (while the store is away it waits like an artifact; the outbox keeps it for `seqtrack-mlflow sync`).
    The training is done and its checkpoints are in the run: a failure here is one warning line."""
    if not (logger.enabled and outcome.checkpoint is not None):
        return
    try:
        logger.log_model(outcome.checkpoint, model_config(tracker))
        logger.release(outcome.checkpoint, checkpoints.CHECKPOINT_DIR)
    except Exception as exc:  # noqa: BLE001 - whatever MLflow raised: the run itself succeeded
        print(
            f"warning: the tracker was not logged as run {logger.run_id}'s MLflow model ({first_line(exc)}): "
            f"its checkpoint (runs:/{logger.run_id}/checkpoints/{outcome.checkpoint.name}) works wherever a "
            "checkpoint does; to get the model, fix the cause and train again",
            file=sys.stderr,
            flush=True,
        )


def _trained_on(selection: Selection) -> str:
    """`airplane + guitar (synthetic LaSOT-format data)`, or the mix with its ratios."""
    lasot = f"{' + '.join(selection.classes)} ({selection.label})"
    if not is_mix(selection.data):
        return lasot
    labels = {part.name: part.label for part in selection.parts}
    names = [lasot if name == LASOT else labels[name] for name in selection.data.mix]
    return " + ".join(names) + f" at ratios {':'.join(f'{r:g}' for r in selection.data.ratios)}"


def _select_once(
    settings: TrainSettings,
    data_run: str | None,
    given: dict[str, Any],
    out_dir: Path,
    ctx: distributed.DistContext,
) -> Selection:
    """The data run's selection, or this run's own. Rank 0 prepares the data (download / generation)
    first; the others then find it cached."""
    if data_run:
        selection = selection_from_run(data_run, out_dir if ctx.is_main else out_dir / f"rank{ctx.rank}")
        check_same_data(selection, {k: v for k, v in given.items() if k in DataConfig.__dataclass_fields__})
        return selection
    if ctx.distributed and not ctx.is_main:
        dist.barrier()
        return select(settings.data, settings.train.seed, None, announce=False)
    selection = select(settings.data, settings.train.seed, out_dir)
    if ctx.distributed:
        dist.barrier()
    return selection


def _broadcast_name(name: str, ctx: distributed.DistContext) -> str:
    """Every rank writes under rank 0's run folder name."""
    holder = [name if ctx.is_main else None]
    dist.broadcast_object_list(holder, src=0)
    return str(holder[0])


__all__ = ["MlflowCallbacks", "TrainResult", "run_train"]
