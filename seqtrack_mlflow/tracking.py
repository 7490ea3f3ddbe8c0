"""Every MLflow call of the project: runs, params, metrics, artifacts, dataset inputs, downloads.

The rest of the package never imports mlflow; it talks to a `RunLogger` (a no-op where a process must
not log: DDP ranks other than 0) and to the download helpers here.

`mlflow run` logs every `-P` value as a string before our script starts, and MLflow refuses to log a
key twice with another string form (`1e-4` vs `0.0001`). `RunLogger.log_params` therefore logs only
the keys the run does not hold yet, and a value that really differs (a resumed run given a new
`epochs`) under `resumed.<key>`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.train.checkpoints import CHECKPOINT_DIR, CheckpointError, latest_epoch_file
from seqtrack_mlflow.train.interrupt import Interrupted

PARAM_VALUE_LIMIT = 6000  # MLflow's param value length limit
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
INTERRUPTED_TAG = "seqtrack.interrupted"  # the signal that stopped the run


class TrackingError(RuntimeError):
    """A run or artifact the user named cannot be found in the tracking store: one line naming both."""


def git_commit(path: Path | None = None) -> str:
    """The project's git commit, or 'unknown' outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=path or Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def store_uri() -> str:
    """The tracking store this process talks to (for messages that must name it)."""
    return mlflow.get_tracking_uri()


class RunLogger:
    """Logs to one MLflow run, or does nothing (DDP ranks other than 0, or no run)."""

    def __init__(self, run_id: str | None):
        self.run_id = run_id
        self._client = MlflowClient() if run_id else None

    @property
    def enabled(self) -> bool:
        return self.run_id is not None

    def log_params(self, params: Mapping[str, Any]) -> dict[str, str]:
        """Log the keys the run does not hold yet; returns {key: held value} for keys held with another
        value (a resumed run), whose new values go to `resumed.<key>`."""
        if not self._client:
            return {}
        existing = dict(self._client.get_run(self.run_id).data.params)
        new = {k: param_str(v) for k, v in params.items() if k not in existing}
        differing = {
            k: existing[k] for k, v in params.items() if k in existing and not same_param(existing[k], v)
        }
        new.update({f"resumed.{k}": param_str(params[k]) for k in differing})
        new = {k: v for k, v in new.items() if k not in existing}
        if new:
            mlflow.log_params(new, run_id=self.run_id)
        return differing

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self._client:
            for key, value in tags.items():
                self._client.set_tag(self.run_id, key, str(value))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Asynchronous: the training loop never waits for the tracking store.

        Through the client, not `mlflow.log_metrics(run_id=...)`, which first reads the whole run
        from the store (a blocking 10-30 ms query on every call).
        """
        if self._client:
            now = int(time.time() * 1000)
            batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
            self._client.log_batch(self.run_id, metrics=batch, synchronous=False)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self._client:
            self._client.log_artifact(self.run_id, str(path), artifact_path=artifact_path)

    def log_artifacts(self, folder: Path, artifact_path: str) -> None:
        if self._client:
            self._client.log_artifacts(self.run_id, str(folder), artifact_path=artifact_path)

    def log_dict(self, values: dict, artifact_file: str) -> None:
        if self._client:
            self._client.log_dict(self.run_id, values, artifact_file)

    def log_dataset(self, index: Any, name: str, context: str) -> None:
        """Record a `datasets.Dataset` as this run's input (the lineage the UI shows). Lineage is worth a
        warning, not a failed run: a store error here is reported and training goes on."""
        if not self._client:
            return
        with warnings.catch_warnings():
            # MLflow's schema inference warns about integer columns (the index has no missing values)
            # and pandas deprecations inside MLflow: noise for a user.
            warnings.simplefilter("ignore")
            try:
                mlflow.log_input(mlflow.data.from_huggingface(index, name=name), context=context)
            except Exception as exc:  # noqa: BLE001 - any store error
                print(f"warning: the dataset input {name} was not recorded: {str(exc).splitlines()[0]}")

    def flush(self) -> None:
        if self._client:
            mlflow.flush_async_logging()


def same_param(logged: str, value: Any) -> bool:
    """`1e-4` and 0.0001, `true` and True, `8` and 8 are the same setting."""
    if logged == param_str(value):
        return True
    if isinstance(value, bool):
        return logged.strip().lower() == str(value).lower()
    if isinstance(value, (int, float)):
        try:
            return float(logged) == float(value)
        except ValueError:
            return False
    return False


def param_str(value: Any) -> str:
    if value is None:
        return "none"
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text[:PARAM_VALUE_LIMIT]


@contextlib.contextmanager
def run_context(
    run_name: str,
    *,
    run_id: str | None = None,
    nested: bool = False,
    system_metrics: bool = False,
    enabled: bool = True,
) -> Iterator[RunLogger]:
    """Start (or attach to) an MLflow run and yield its logger.

    Under `mlflow run` the process finds its run in MLFLOW_RUN_ID and attaches to it; a nested call
    opens a child of the active run. A run that raises is ended FAILED, one stopped by SIGTERM/SIGINT
    KILLED (each nested context ends its own run, innermost first), so no RUNNING run is left.
    """
    if not enabled:
        yield RunLogger(None)
        return
    if system_metrics:
        _require_psutil()
    with mlflow.start_run(
        run_id=run_id, run_name=None if run_id else run_name, nested=nested, log_system_metrics=system_metrics
    ) as run:
        logger = RunLogger(run.info.run_id)
        try:
            yield logger
        except (KeyboardInterrupt, Interrupted) as exc:
            # Stopped by a signal, not failed: KILLED. The tag survives `mlflow run`'s launcher, which
            # marks its own run FAILED after a Ctrl-C whatever the run's status (README, "Failures").
            signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
            with contextlib.suppress(Exception):
                logger.set_tags({INTERRUPTED_TAG: signal.Signals(signum).name})
                logger.flush()
            mlflow.end_run("KILLED")
            raise
        finally:
            logger.flush()


# -- one process per run ------------------------------------------------------------------------

OWNER_TAG, HEARTBEAT_TAG = "seqtrack.owner", "seqtrack.heartbeat"
HEARTBEAT_EVERY_S = 30.0
HEARTBEAT_STALE_S = 120.0  # a run whose owner has not beaten for this long is free to continue
CLAIM_SETTLE_S = 2.0  # wait before reading the owner back: a concurrent claim lands within it


def claim_run(run_id: str, *, stale_after: float = HEARTBEAT_STALE_S, settle: float = CLAIM_SETTLE_S) -> str:
    """Make this process the only one continuing `run_id`; returns the owner token.

    MLflow has no compare-and-set, so: refuse if the run has an owner with a fresh heartbeat; else
    write our token and heartbeat, wait `settle` seconds and read the owner back: of two processes
    that claim at once, the last writer wins and the other sees its token gone and refuses. The owner
    tag is removed when the run ends (`release_run`); a killed process's claim goes stale.
    """
    client = MlflowClient()
    _refuse_if_owned(client, run_id, stale_after, None)
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    client.set_tag(run_id, OWNER_TAG, token)
    client.set_tag(run_id, HEARTBEAT_TAG, f"{time.time():.0f}")
    time.sleep(settle)
    _refuse_if_owned(client, run_id, float("inf"), token)
    return token


def _refuse_if_owned(client: MlflowClient, run_id: str, stale_after: float, token: str | None) -> None:
    run = client.get_run(run_id)
    owner = run.data.tags.get(OWNER_TAG)
    beat = float(run.data.tags.get(HEARTBEAT_TAG, "0") or 0)
    if owner is None or owner == token:
        return
    if token is None and time.time() - beat > stale_after:
        return
    raise TrackingError(
        f"run {run_id} is being continued by another process ({owner}): wait for it to end, or stop it; "
        f"a run whose process died is free again {stale_after:.0f} s after its last heartbeat"
        if token is None
        else f"run {run_id} was claimed at the same moment by another process ({owner}): "
        "only one may continue it"
    )


def release_run(run_id: str, token: str) -> None:
    """Drop our claim (the run is free to continue at once); a failure here only delays the next one."""
    client = MlflowClient()
    with contextlib.suppress(Exception):
        if client.get_run(run_id).data.tags.get(OWNER_TAG) == token:
            client.delete_tag(run_id, OWNER_TAG)


class Heartbeat:
    """Keeps `seqtrack.heartbeat` fresh on a run from a daemon thread, so a second process can tell a
    live owner from a dead one."""

    def __init__(self, run_id: str, every: float = HEARTBEAT_EVERY_S):
        self.run_id, self.every = run_id, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="seqtrack-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        client = MlflowClient()
        while not self._stop.wait(self.every):
            # A missed beat only makes the run look idle sooner.
            with contextlib.suppress(Exception):
                client.set_tag(self.run_id, HEARTBEAT_TAG, f"{time.time():.0f}")


def _require_psutil() -> None:
    try:
        import psutil  # noqa: F401
    except ImportError as exc:  # pragma: no cover - psutil is a declared dependency
        raise RuntimeError(
            "system metrics need psutil: pip install psutil, or pass -P system_metrics=false"
        ) from exc


# -- downloads -------------------------------------------------------------------------------------


def download(artifact_uri: str, dst: Path) -> Path:
    """Download into a private temporary folder beside `dst`, then move it into place: a reader never
    sees a half-written file, and two processes never write the same one."""
    dst.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=dst))
    try:
        with _no_progress_bar():
            got = Path(mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=str(tmp)))
        final = dst / got.name
        if final.exists():
            shutil.rmtree(final) if final.is_dir() else final.unlink()
        got.replace(final)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _no_progress_bar() -> Iterator[None]:
    """MLflow's download bar is noise between training reports (one small file, every resume)."""
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


def split_runs_uri(uri: str) -> tuple[str, str]:
    """`runs:/<id>/<path>` -> (id, path)."""
    run_id, _, path = uri[len("runs:/") :].partition("/")
    return run_id, path


def resolve_checkpoint(target: str, download_dir: Path) -> tuple[Path, str | None]:
    """A local path, `runs:/<id>/<path>` URI, or a train run id -> (local file, run id if known)."""
    path = Path(target).expanduser()
    if path.is_file():
        return path, None
    if target.startswith("runs:/"):
        return _download_checkpoint(target, download_dir, target), split_runs_uri(target)[0]
    if RUN_ID.match(target):
        try:
            names = [a.path for a in MlflowClient().list_artifacts(target, CHECKPOINT_DIR)]
        except Exception as exc:  # noqa: BLE001 - any store error means "no such run here"
            raise CheckpointError(
                _not_found(target, f"no run {target} in the tracking store {store_uri()}")
            ) from exc
        latest = latest_epoch_file(names)
        if latest is None:
            raise CheckpointError(_not_found(target, f"run {target} has no {CHECKPOINT_DIR}/epoch_N.ckpt"))
        return _download_checkpoint(f"runs:/{target}/{latest}", download_dir, target), target
    raise CheckpointError(_not_found(target, "no such file, runs:/ URI or run id"))


def checkpoint_uri(run_id: str, name: str) -> str:
    return f"runs:/{run_id}/{CHECKPOINT_DIR}/{name}"


def _download_checkpoint(uri: str, download_dir: Path, target: str) -> Path:
    try:
        return download(uri, download_dir)
    except Exception as exc:  # noqa: BLE001 - MLflow raises several types for a missing artifact
        raise CheckpointError(_not_found(target, str(exc).splitlines()[0])) from exc


def _not_found(target: str, why: str) -> str:
    return (
        f"checkpoint {target!r} not found ({why}): give a checkpoint file, "
        "runs:/<run_id>/checkpoints/epoch_N.ckpt, or the id of a train run"
    )


def last_metric_step(run_id: str, key: str) -> int:
    """The highest step logged for `key` on the run (-1: none): a resumed run logs only later steps."""
    try:
        history = MlflowClient().get_metric_history(run_id, key)
    except Exception:  # noqa: BLE001 - a fresh run
        return -1
    return max((m.step for m in history), default=-1)


def fetch_artifact(run_id: str, artifact_path: str, dst: Path) -> Path | None:
    """One artifact of a run, or None where the run has none by that name."""
    try:
        return download(f"runs:/{run_id}/{artifact_path}", dst)
    except Exception:  # noqa: BLE001 - an older run without the file
        return None


def download_selection(data_run: str, dst: Path) -> tuple[str, Path, Path]:
    """The index folder and dataset_summary.json of a select_data run (id or runs:/ URI).

    Returns (run id, index folder, summary file)."""
    run_id = split_runs_uri(data_run)[0] if data_run.startswith("runs:/") else data_run
    if not RUN_ID.match(run_id):
        raise TrackingError(
            f"data={data_run!r} is not a run id or runs:/ URI: give the id of a select_data run"
        )
    try:
        MlflowClient().get_run(run_id)
    except Exception:  # noqa: BLE001 - any store error means "no such run here"
        raise TrackingError(
            f"no select_data run {run_id} in the tracking store {store_uri()}: "
            "set MLFLOW_TRACKING_URI to the store that holds it"
        ) from None
    index = fetch_artifact(run_id, "index", dst)
    summary = fetch_artifact(run_id, "dataset_summary.json", dst)
    if index is None or summary is None:
        raise TrackingError(
            f"run {run_id} has no index/ and dataset_summary.json artifacts: give the id of a select_data run"
        )
    return run_id, index, summary
