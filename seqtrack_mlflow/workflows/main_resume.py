"""`main -P resume=auto`: what a restarted main job continues.

The parent run carries the job's key (`seqtrack.run_key`); its nested runs do not. Restarted, the job
reopens its unfinished parent run and, of the parent's nested runs: reuses a FINISHED select_data run
(its index), continues the train run from its last checkpoint (as `-e train -P resume=<run id>`), or
reuses it as it is when it FINISHED; evaluate runs again (the short step; an interrupted evaluate run
stays KILLED beside the new one). A nested run that never got that far (no index, no checkpoint) is
left as it ended and its step runs anew. A job whose parent FINISHED raises `JobFinished`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from seqtrack_mlflow.config.job_key import JobFinished, require_key
from seqtrack_mlflow.tracking import find_job_run, list_artifact_names, nested_runs
from seqtrack_mlflow.tracking.health import say
from seqtrack_mlflow.train.checkpoints import CHECKPOINT_DIR, latest_epoch_file


@dataclass(frozen=True)
class MainRestart:
    parent: str | None = None  # the parent run to reopen; None: a new one
    select_data: str | None = None  # a FINISHED select_data run to reuse
    train: str | None = None  # a train run to continue (resume=<id>), or to reuse when train_done
    train_done: bool = False
    checkpoint: str | None = None  # the train run's latest checkpoint file name, when it has one


def plan_restart(key: str | None) -> MainRestart:
    """What this start of the main job `key` continues (see the module)."""
    key = require_key(key)
    parent = find_job_run(key, "main", exclude=os.environ.get("MLFLOW_RUN_ID"))
    if parent is None:
        say(f"resume=auto: job {key} has no run yet: starting one")
        return MainRestart()
    if parent.finished:
        raise JobFinished(
            f"job {key} is done: its run {parent.run_id} FINISHED, nothing to resume "
            "(run again under another -P run_key)"
        )
    children = nested_runs(parent.run_id)
    data = children.get("select_data")
    train = children.get("train")
    checkpoint = latest_epoch_file(list_artifact_names(train.run_id, CHECKPOINT_DIR)) if train else None
    restart = MainRestart(
        parent=parent.run_id,
        select_data=data.run_id if data and data.finished else None,
        train=train.run_id if train and checkpoint else None,
        train_done=bool(train and checkpoint and train.finished),
        checkpoint=checkpoint,
    )
    train_part = (
        "the train run is done"
        if restart.train_done
        else f"the train run {restart.train} continues from its last checkpoint"
        if restart.train
        else "training starts"
    )
    say(f"resume=auto: continuing job {key}'s run {parent.run_id} ({parent.status}): {train_part}")
    return restart
