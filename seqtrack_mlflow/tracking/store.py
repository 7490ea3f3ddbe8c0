"""Which tracking store this process talks to, and the one error for a run or artifact not found there."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow


class TrackingError(RuntimeError):
    """A run or artifact the user named cannot be found in the tracking store: one line naming both."""


def store_uri() -> str:
    """The tracking store this process talks to (for messages that must name it)."""
    return mlflow.get_tracking_uri()


def require_store_for(what: str) -> None:
    """Before looking a run up: with no MLFLOW_TRACKING_URI, MLflow's store is ./mlflow.db of the current
    folder, and merely asking it creates an empty one. Where there is none, say so instead."""
    if os.environ.get("MLFLOW_TRACKING_URI") or mlflow.tracking.is_tracking_uri_set():
        return
    if not Path("mlflow.db").exists():
        raise TrackingError(
            f"{what}: no MLflow store in this folder ({Path('mlflow.db').resolve()} does not exist): run "
            "from the folder that holds mlflow.db, or set MLFLOW_TRACKING_URI=sqlite:////path/to/mlflow.db "
            "(or http://<server>:5000)"
        )
