"""`seqtrack-mlflow sync FOLDER`: upload the outbox a run left when it ended with the store away.

The folder is input from anywhere (folders get copied between machines): its records are checked before
anything is sent (`outbox_check`), and the store they go to is the user's choice, never the folder's: the
store the manifest names is only shown, for the user to compare.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.messages import collapsed, first_line
from seqtrack_mlflow.tracking.health import fail_fast_http
from seqtrack_mlflow.tracking.outbox import PENDING_MANIFEST, Outbox
from seqtrack_mlflow.tracking.store import TrackingError, store_uri


def sync_run_folder(folder: Path, *, tracking_uri: str | None = None, client: Any | None = None) -> str:
    """Upload what a run that ended offline left in its local folder (metrics, then artifacts/params/tags
    in their order) and set the run's final status. Each part is removed once sent, so running it again
    after a failure sends only the rest. The store: `tracking_uri`, else MLFLOW_TRACKING_URI, else a
    refusal (`client`, for tests, replaces it). Returns the line that says what went where."""
    outbox = Outbox(folder)
    if not outbox.exists():
        raise TrackingError(
            f"{outbox.folder} holds no {PENDING_MANIFEST}: nothing to upload (give a run's local folder)"
        )
    manifest = outbox.manifest()
    run_id, recorded = manifest["run_id"], collapsed(manifest.get("tracking_uri", ""), 200)
    if client is None:
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise TrackingError(
                f"which tracking store should run {run_id} go to? set MLFLOW_TRACKING_URI or pass "
                f"--tracking-uri (the folder names {recorded or 'none'}; if that is the one: seqtrack-mlflow "
                f"sync --tracking-uri {shlex.quote(recorded or '<uri>')} {shlex.quote(str(folder))})"
            )
        mlflow.set_tracking_uri(uri)
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
    where = store_uri()
    note = f" (the folder named {recorded})" if recorded and recorded != where else ""
    return (
        f"uploaded {points} metric points and {calls} artifacts/params/tags to run {run_id} in "
        f"{where}{note}; status {manifest['status']}"
    )
