"""Which job a run belongs to across restarts: the key `resume=auto` finds the job's run by.

A scheduler restarts the same command after a preemption or a requeue; the key is what stays the same:
the user's `run_key`, else Slurm's job id (stable across requeues; an array task is its array job's id
and its task id). The cluster name goes with a Slurm id: two clusters sharing one tracking server number
their jobs independently.
"""

from __future__ import annotations

from collections.abc import Mapping

from seqtrack_mlflow.config.declare import ConfigError

AUTO = "auto"  # resume=auto: continue this job's unfinished run, if any


def job_key(run_key: str | None, env: Mapping[str, str]) -> str | None:
    """The user's key, else the Slurm job's (`slurm:<cluster>/<job>` or `.../<array job>_<task>`), else
    None (a run no scheduler restarts)."""
    if run_key:
        return run_key
    array, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    job = f"{array}_{task}" if array and task else env.get("SLURM_JOB_ID")
    if not job:
        return None
    return f"slurm:{env.get('SLURM_CLUSTER_NAME') or 'cluster'}/{job}"


def require_key(key: str | None) -> str:
    """`resume=auto` needs a key: one line naming both ways to give one."""
    if not key:
        raise ConfigError(
            "resume=auto needs to know the job: pass -P run_key=<name> (the same on every restart), or "
            "run it as a Slurm job (its SLURM_JOB_ID is the key)"
        )
    return key


class JobFinished(Exception):
    """The job's run finished before this restart (a requeue after the end): nothing is left to do. The
    CLI prints the message and exits 0, so a scheduler does not count it as a failure."""
