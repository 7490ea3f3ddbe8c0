"""`resume=auto` resolved to what this start of the job continues, decided once (rank 0) for every
process of a torchrun launch: the job's run with its latest checkpoint, the job's run from the start
(killed before its first checkpoint), or a new run; a job whose run finished raises `JobFinished`."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch.distributed as dist

from seqtrack_mlflow.config.job_key import JobFinished, require_key
from seqtrack_mlflow.tracking import find_job_run, list_artifact_names
from seqtrack_mlflow.tracking.health import say
from seqtrack_mlflow.train.checkpoints import CHECKPOINT_DIR, latest_epoch_file
from seqtrack_mlflow.train.distributed import DistContext


@dataclass(frozen=True)
class AutoTarget:
    resume: str | None = None  # a run to resume from its latest checkpoint, as resume=<run id> does
    restart: str | None = None  # a run that holds no checkpoint yet: continued, trained from the start

    @property
    def run_id(self) -> str | None:
        return self.resume or self.restart


def resolve_auto(key: str | None, entry_point: str, ctx: DistContext) -> AutoTarget:
    """What `resume=auto` continues for the job `key` (a ConfigError without a key)."""
    key = require_key(key)
    decision: AutoTarget | str | Exception | None = None
    if ctx.is_main:
        try:
            decision = _decide(key, entry_point)
        except Exception as exc:  # noqa: BLE001 - raised below, on every rank (none waits for it)
            decision = exc
    if ctx.distributed:
        holder = [decision]
        dist.broadcast_object_list(holder, src=0)
        decision = holder[0]
    if isinstance(decision, Exception):
        raise decision
    if isinstance(decision, str):
        raise JobFinished(decision)
    assert decision is not None
    return decision


def _decide(key: str, entry_point: str) -> AutoTarget | str:
    """The target, or the line saying the job is done."""
    run = find_job_run(key, entry_point, exclude=os.environ.get("MLFLOW_RUN_ID"))
    if run is None:
        say(f"resume=auto: job {key} has no run yet: starting one")
        return AutoTarget()
    if run.finished:
        return (
            f"job {key} is done: its run {run.run_id} FINISHED, nothing to resume "
            "(train again under another -P run_key)"
        )
    if latest_epoch_file(list_artifact_names(run.run_id, CHECKPOINT_DIR)):
        say(f"resume=auto: continuing job {key}'s run {run.run_id} ({run.status}) from its last checkpoint")
        return AutoTarget(resume=run.run_id)
    say(
        f"resume=auto: job {key}'s run {run.run_id} ({run.status}) has no checkpoint yet: "
        "training it again from the start"
    )
    return AutoTarget(restart=run.run_id)
