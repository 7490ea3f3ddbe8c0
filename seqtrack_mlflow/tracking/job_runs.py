"""A job's run found again after a restart: the run tagged with the job's key (`config.job_key`).

`resume=auto` continues the job's most recent unfinished run (RUNNING with a dead owner, KILLED,
FAILED); a job whose run FINISHED is done. The search covers the experiment the new run would go to
and only top-level runs of the same entry point (`main`'s nested train run carries no key: its parent
does), so one key never mixes a `train` job with a `main` job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mlflow.tracking import MlflowClient

from seqtrack_mlflow.tracking.store import TrackingError, store_uri

RUN_KEY_TAG, ENTRY_POINT_TAG = "seqtrack.run_key", "seqtrack.entry_point"
FINISHED = "FINISHED"


@dataclass(frozen=True)
class JobRun:
    run_id: str
    status: str

    @property
    def finished(self) -> bool:
        return self.status == FINISHED


def job_tags(key: str, entry_point: str) -> dict[str, str]:
    """The tags that make a run findable as its job's."""
    return {RUN_KEY_TAG: key, ENTRY_POINT_TAG: entry_point}


def find_job_run(key: str, entry_point: str, *, exclude: str | None = None) -> JobRun | None:
    """The job's run to continue: its most recent unfinished one, else its most recent (finished) one,
    else None. `exclude`: the run `mlflow run` opened for this very process (MLFLOW_RUN_ID)."""
    query = f"tags.`{RUN_KEY_TAG}` = '{key}' and tags.`{ENTRY_POINT_TAG}` = '{entry_point}'"
    try:
        experiments = _experiment_ids()
        if not experiments:  # a named experiment not created yet holds no run
            return None
        runs = MlflowClient().search_runs(
            experiments, filter_string=query, order_by=["attributes.start_time DESC"], max_results=100
        )
    except Exception as exc:  # noqa: BLE001 - whatever the store raised: the job cannot be looked up
        raise TrackingError(
            f"resume=auto: cannot search the tracking store {store_uri()} for run_key {key!r} ({exc}): "
            "check MLFLOW_TRACKING_URI"
        ) from exc
    found = [JobRun(r.info.run_id, r.info.status) for r in runs if r.info.run_id != exclude]
    return next((r for r in found if not r.finished), found[0] if found else None)


def _experiment_ids() -> list[str]:
    """The experiment a new run of this process goes to (MLflow's own order: the id, the name, the
    default experiment)."""
    if os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return [os.environ["MLFLOW_EXPERIMENT_ID"]]
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if name:
        experiment = MlflowClient().get_experiment_by_name(name)
        return [experiment.experiment_id] if experiment else []
    return ["0"]


def nested_runs(parent_id: str) -> dict[str, JobRun]:
    """The nested runs of `parent_id` by run name (select_data, train, evaluate), the most recent of
    each name."""
    client = MlflowClient()
    experiment = client.get_run(parent_id).info.experiment_id
    runs = client.search_runs(
        [experiment],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'",
        order_by=["attributes.start_time DESC"],
        max_results=100,
    )
    found: dict[str, JobRun] = {}
    for run in runs:
        found.setdefault(run.data.tags.get("mlflow.runName", ""), JobRun(run.info.run_id, run.info.status))
    return found
