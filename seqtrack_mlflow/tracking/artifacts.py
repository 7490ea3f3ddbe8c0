"""Finding and fetching what runs hold: run ids and `runs:/` URIs, artifacts, metric history, a
select_data run's index, a train run's checkpoint. Every download lands atomically."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.tracking.store import TrackingError, require_store_for, store_uri

RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def split_runs_uri(uri: str) -> tuple[str, str]:
    """`runs:/<id>/<path>` -> (id, path)."""
    run_id, _, path = uri[len("runs:/") :].partition("/")
    return run_id, path


def download(artifact_uri: str, dst: Path) -> Path:
    """Download into a private temporary folder beside `dst`, then move it into place: a reader never
    sees a half-written file, and two processes never write the same one."""
    dst.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=dst))
    try:
        with no_progress_bar():
            got = Path(mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=str(tmp)))
        final = dst / got.name
        if final.exists():
            shutil.rmtree(final) if final.is_dir() else final.unlink()
        got.replace(final)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def no_progress_bar() -> Iterator[None]:
    """MLflow's download bar is noise between training reports (one small file, every resume; the
    model a train run logs, loaded once to check its input example)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def list_artifact_names(run_id: str, folder: str) -> list[str]:
    """The paths (`<folder>/<name>`) of the artifacts directly in a run's `folder`; a store error (no
    such run) propagates."""
    return [a.path for a in MlflowClient().list_artifacts(run_id, folder)]


def fetch_artifact(run_id: str, artifact_path: str, dst: Path) -> Path | None:
    """One artifact of a run, or None where the run has none by that name."""
    try:
        return download(f"runs:/{run_id}/{artifact_path}", dst)
    except Exception:  # noqa: BLE001 - an older run without the file
        return None


def run_params(run_id: str) -> dict[str, str]:
    """The params a run holds ({} where the store cannot say)."""
    try:
        return dict(MlflowClient().get_run(run_id).data.params)
    except Exception:  # noqa: BLE001 - a store error: nothing known
        return {}


def last_metric_step(run_id: str, key: str) -> int:
    """The highest step logged for `key` on the run (-1: none): a resumed run logs only later steps."""
    try:
        history = MlflowClient().get_metric_history(run_id, key)
    except Exception:  # noqa: BLE001 - a fresh run
        return -1
    return max((m.step for m in history), default=-1)


def resolve_data_run(data_run: str) -> str:
    """The run id of a select_data run given as an id or runs:/ URI, checked to exist in the store."""
    run_id = split_runs_uri(data_run)[0] if data_run.startswith("runs:/") else data_run
    if not RUN_ID.match(run_id):
        raise TrackingError(
            f"data={data_run!r} is not a run id or runs:/ URI: give the id of a select_data run"
        )
    require_store_for(f"data={data_run}")
    try:
        MlflowClient().get_run(run_id)
    except Exception:  # noqa: BLE001 - any store error means "no such run here"
        raise TrackingError(
            f"no select_data run {run_id} in the tracking store {store_uri()}: "
            "set MLFLOW_TRACKING_URI to the store that holds it"
        ) from None
    return run_id


def download_selection(data_run: str, dst: Path) -> tuple[str, Path, Path]:
    """The index folder and dataset_summary.json of a select_data run (id or runs:/ URI).

    Returns (run id, index folder, summary file)."""
    run_id = resolve_data_run(data_run)
    index = fetch_artifact(run_id, "index", dst)
    summary = fetch_artifact(run_id, "dataset_summary.json", dst)
    if index is None or summary is None:
        raise TrackingError(
            f"run {run_id} has no index/ and dataset_summary.json artifacts: give the id of a select_data run"
        )
    return run_id, index, summary
