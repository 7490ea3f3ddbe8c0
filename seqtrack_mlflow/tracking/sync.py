"""`seqtrack-mlflow sync FOLDER`: upload the outbox a run left when it ended with the store away."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.messages import first_line
from seqtrack_mlflow.tracking.health import fail_fast_http
from seqtrack_mlflow.tracking.outbox import PENDING_MANIFEST, Outbox
from seqtrack_mlflow.tracking.store import TrackingError, store_uri


def sync_run_folder(folder: Path, *, client: Any | None = None) -> str:
    """Upload what a run that ended offline left in its local folder (metrics, then artifacts/params/tags
    in their order) and set the run's final status. Each part is removed once sent, so running it again
    after a failure sends only the rest. `client`: an MlflowClient on the run's store by default (the
    manifest's, unless MLFLOW_TRACKING_URI names one)."""
    outbox = Outbox(folder)
    if not outbox.exists():
        raise TrackingError(
            f"{outbox.folder} holds no {PENDING_MANIFEST}: nothing to upload (give a run's local folder)"
        )
    manifest = outbox.manifest()
    run_id = manifest["run_id"]
    if client is None:
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            mlflow.set_tracking_uri(manifest["tracking_uri"])
        fail_fast_http()
        client = MlflowClient()
    try:
        client.get_run(run_id)
    except Exception as exc:  # noqa: BLE001 - unreachable or unknown: one line either way
        raise TrackingError(
            f"run {run_id} cannot be reached in {store_uri()} ({first_line(exc)}): start the tracking "
            "server (or set MLFLOW_TRACKING_URI to the store that holds the run) and run this again"
        ) from None
    points, calls = outbox.replay(client)
    return (
        f"uploaded {points} metric points and {calls} artifacts/params/tags to run {run_id} in "
        f"{store_uri()}; status {manifest['status']}"
    )
