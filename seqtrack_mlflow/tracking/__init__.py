"""Every MLflow call of the project: the only package that imports mlflow.

The rest of the package talks to a `RunLogger` (a no-op where a process must not log: DDP ranks other
than 0), opened by `run_context`, and to the lookups here. Its parts:

    provenance  the git commit a run records
    store       which tracking store, and TrackingError (a run or artifact not found there)
    health      fail-fast HTTP, and whether the store answers (one line lost, one line back)
    params      how settings become params, and when two forms are the same setting
    outbox      the calls a run could not send: their record in the run's folder, and their replay
    outbox_check  that record read as untrusted input (a folder from anywhere): checked before sending
    logger      RunLogger: metrics buffered and sent by a thread, other calls queued while offline
    runs        run_context: start/attach a run, end it FAILED/KILLED/FINISHED, online or not
    experiment  where runs land: the experiment (described, marked model training) and the store
    closing     the console's first and last MLflow lines (pure): UI command, run ids, checkpoints
    sync        `seqtrack-mlflow sync`: replay a run's outbox to the store the user names
    job_runs    a job's run found again after a restart (resume=auto, by its run_key tag)
    ownership   one process per run: owned_run (claim, heartbeat, release)
    owner       the owner token, and whether its process still lives on this machine
    artifacts   run ids and runs:/ URIs, downloads, a select_data run's index
    stored      a local artifact store's files: read in place, local copies released, checkpoints pruned
    tracker_model  the trained tracker as an MLflow pyfunc model (logged by train as `model`)
    registry    the Model Registry: registering a train run's tracker, models:/ references resolved
"""

from seqtrack_mlflow.tracking.artifacts import (
    RUN_ID,
    download,
    download_selection,
    fetch_artifact,
    last_metric_step,
    list_artifact_names,
    resolve_data_run,
    run_params,
    split_runs_uri,
)
from seqtrack_mlflow.tracking.closing import closing_lines, registered_lines, start_line
from seqtrack_mlflow.tracking.experiment import Placement, run_placement
from seqtrack_mlflow.tracking.health import HEALTH, Health, fail_fast_http, final_wait_s, probe_every_s
from seqtrack_mlflow.tracking.job_runs import RUN_KEY_TAG, JobRun, find_job_run, job_tags, nested_runs
from seqtrack_mlflow.tracking.logger import DESCRIPTION_TAG, RunLogger
from seqtrack_mlflow.tracking.outbox import Outbox, apply_op
from seqtrack_mlflow.tracking.ownership import (
    HEARTBEAT_TAG,
    OWNER_TAG,
    Heartbeat,
    claim_run,
    owned_run,
    release_run,
)
from seqtrack_mlflow.tracking.params import PARAM_VALUE_LIMIT, param_str, same_param
from seqtrack_mlflow.tracking.provenance import git_commit
from seqtrack_mlflow.tracking.registry import (
    RegisteredTracker,
    download_registered_checkpoint,
    is_model_uri,
    register_run_tracker,
    register_tracker,
)
from seqtrack_mlflow.tracking.runs import INTERRUPTED_TAG, RunNotUploaded, run_context
from seqtrack_mlflow.tracking.store import TrackingError, require_store_for, store_uri
from seqtrack_mlflow.tracking.stored import stored_file
from seqtrack_mlflow.tracking.sync import sync_run_folder

__all__ = [
    "DESCRIPTION_TAG",
    "HEALTH",
    "HEARTBEAT_TAG",
    "INTERRUPTED_TAG",
    "OWNER_TAG",
    "PARAM_VALUE_LIMIT",
    "RUN_ID",
    "RUN_KEY_TAG",
    "RegisteredTracker",
    "Health",
    "Heartbeat",
    "JobRun",
    "Outbox",
    "Placement",
    "RunLogger",
    "RunNotUploaded",
    "TrackingError",
    "apply_op",
    "claim_run",
    "closing_lines",
    "download",
    "download_registered_checkpoint",
    "download_selection",
    "fail_fast_http",
    "fetch_artifact",
    "find_job_run",
    "final_wait_s",
    "git_commit",
    "is_model_uri",
    "job_tags",
    "last_metric_step",
    "nested_runs",
    "list_artifact_names",
    "owned_run",
    "param_str",
    "probe_every_s",
    "register_run_tracker",
    "registered_lines",
    "register_tracker",
    "release_run",
    "require_store_for",
    "resolve_data_run",
    "run_context",
    "run_params",
    "run_placement",
    "same_param",
    "split_runs_uri",
    "start_line",
    "store_uri",
    "stored_file",
    "sync_run_folder",
]
