"""The job key `resume=auto` finds a job's run by: the user's run_key, else Slurm's job id (stable across
requeues), an array task by its array job and task ids; none outside a scheduler without a run_key."""

from __future__ import annotations

import pytest

from seqtrack_mlflow.config import ConfigError
from seqtrack_mlflow.config.job_key import job_key, require_key
from seqtrack_mlflow.config.settings import RunConfig

SLURM = {"SLURM_JOB_ID": "4242", "SLURM_CLUSTER_NAME": "lab"}


def test_the_users_key_wins_over_slurm() -> None:
    assert job_key("exp-7", SLURM) == "exp-7"


def test_under_slurm_the_job_id_with_its_cluster() -> None:
    assert job_key(None, SLURM) == "slurm:lab/4242"


def test_an_array_task_is_its_array_job_and_task_not_its_own_job_id() -> None:
    env = {**SLURM, "SLURM_JOB_ID": "4250", "SLURM_ARRAY_JOB_ID": "4242", "SLURM_ARRAY_TASK_ID": "3"}
    assert job_key(None, env) == "slurm:lab/4242_3"


def test_no_key_outside_a_scheduler() -> None:
    assert job_key(None, {}) is None


def test_auto_without_a_key_is_one_line_naming_both_ways() -> None:
    with pytest.raises(ConfigError, match="pass -P run_key=<name>.*Slurm job"):
        require_key(None)


@pytest.mark.parametrize("bad", ["", " x", "it's", 'a"b'])
def test_a_key_with_quotes_or_blanks_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="run_key=.* is invalid: use a name without quotes"):
        RunConfig(run_key=bad).validate()
