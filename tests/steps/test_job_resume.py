"""What `resume=auto` decides for a job on a real (SQLite) store, in one process: a new run, the job's
run from its last checkpoint, the job's run from the start when it holds no checkpoint yet, or
`JobFinished` (exit 0) when its run finished; no key at all is one line naming the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.config import ConfigError
from seqtrack_mlflow.config.job_key import JobFinished
from seqtrack_mlflow.steps.job_resume import AutoTarget, resolve_auto
from seqtrack_mlflow.tracking import job_tags
from seqtrack_mlflow.train.distributed import DistContext

ONE = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


def job_run(status: str) -> str:
    client = MlflowClient()
    run_id = client.create_run("0", tags=job_tags("exp-7", "train")).info.run_id
    client.set_terminated(run_id, status)
    return run_id


def test_a_new_job_starts_a_run(mlflow_uri: str, capsys) -> None:
    assert resolve_auto("exp-7", "train", ONE) == AutoTarget()
    assert "resume=auto: job exp-7 has no run yet: starting one" in capsys.readouterr().err


def test_a_killed_run_with_a_checkpoint_is_resumed_from_it(
    mlflow_uri: str, tiny_checkpoint_file: Path
) -> None:
    run_id = job_run("KILLED")
    MlflowClient().log_artifact(run_id, str(tiny_checkpoint_file), "checkpoints")
    target = resolve_auto("exp-7", "train", ONE)
    assert target == AutoTarget(resume=run_id) and target.run_id == run_id


def test_a_run_killed_before_its_first_checkpoint_is_trained_again_in_place(mlflow_uri: str, capsys) -> None:
    run_id = job_run("FAILED")
    assert resolve_auto("exp-7", "train", ONE) == AutoTarget(restart=run_id)
    assert "has no checkpoint yet: training it again from the start" in capsys.readouterr().err


def test_a_finished_job_is_done(mlflow_uri: str) -> None:
    run_id = job_run("FINISHED")
    with pytest.raises(JobFinished, match=f"job exp-7 is done: its run {run_id} FINISHED"):
        resolve_auto("exp-7", "train", ONE)


def test_no_key_is_refused(mlflow_uri: str) -> None:
    with pytest.raises(ConfigError, match="resume=auto needs to know the job"):
        resolve_auto(None, "train", ONE)
