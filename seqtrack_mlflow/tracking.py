"""Every MLflow call of the project: runs, params, metrics, artifacts, dataset inputs, downloads.

The rest of the package never imports mlflow; it talks to a `RunLogger` (a no-op where a process must
not log: DDP ranks other than 0) and to the download helpers here.

`mlflow run` logs every `-P` value as a string before our script starts, and MLflow refuses to log a
key twice with another string form (`1e-4` vs `0.0001`). `RunLogger.log_params` therefore logs only
the keys the run does not hold yet, and a value that really differs (a resumed run given a new
`epochs`) under `resumed.<key>`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
import weakref
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.train.checkpoints import CHECKPOINT_DIR, CheckpointError, latest_epoch_file
from seqtrack_mlflow.train.interrupt import Interrupted

PARAM_VALUE_LIMIT = 6000  # MLflow's param value length limit
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
INTERRUPTED_TAG = "seqtrack.interrupted"  # the signal that stopped the run
DESCRIPTION_TAG = "mlflow.note.content"  # what the UI shows as the run's description


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


# -- tracking-server outages ------------------------------------------------------------------------
#
# MLflow retries a failed HTTP request 7 times with exponential backoff (about 4 minutes) and waits up to
# 120 s for each answer, so a training step that logs to a stopped server hangs for minutes and then
# raises. The project's calls fail fast instead (`fail_fast_http`; values the user set win) and the
# RunLogger keeps what it could not send: one warning line when the server is lost, one when it is back,
# and whatever never got through waits in the run's local folder for `seqtrack-mlflow sync <folder>`.

FAIL_FAST_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",  # MLflow: 7 (~4 min of backoff)
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # MLflow: 2
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",  # MLflow: 1.0
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",  # s per request (MLflow: 120); a large checkpoint needs time
}
METRIC_BUFFER_POINTS = 100_000  # metric points kept while the server is away; past it the oldest go
BATCH_POINTS = 1000  # MLflow's limit of metrics per log_batch
SEND_EVERY_S = 1.0  # the sender thread ships buffered metrics this often
PENDING_MANIFEST = "pending_upload.json"  # what `seqtrack-mlflow sync` reads (run, store, final status)
PENDING_METRICS = "pending_metrics.jsonl"
PENDING_OPS = "pending_ops.jsonl"  # artifacts, tags, params and dicts, in the order they were logged


def _env_seconds(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def probe_every_s() -> float:
    """While the server is away, it is asked again this often (SEQTRACK_TRACKING_PROBE_S, default 15)."""
    return _env_seconds("SEQTRACK_TRACKING_PROBE_S", 15.0)


def final_wait_s() -> float:
    """At the end of a run the server is awaited this long (SEQTRACK_TRACKING_FINAL_WAIT_S, default 60)."""
    return _env_seconds("SEQTRACK_TRACKING_FINAL_WAIT_S", 60.0)


def fail_fast_http() -> None:
    """Let the project's MLflow HTTP calls fail within seconds, not minutes (the user's values win)."""
    for key, value in FAIL_FAST_HTTP.items():
        os.environ.setdefault(key, value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class _Health:
    """Whether this process's tracking store answers: one line when it is lost, one when it is back.

    Shared by every RunLogger of the process (a pipeline's parent and nested runs talk to one store)."""

    def __init__(self) -> None:
        self.online = True
        self.lost_at = 0.0
        self._next_probe = 0.0
        self._lock = threading.Lock()

    def lost(self, exc: BaseException) -> None:
        with self._lock:
            if not self.online:
                return
            self.online = False
            self.lost_at = time.time()
            self._next_probe = self.lost_at + probe_every_s()
        _say(
            f"warning: the tracking server {store_uri()} is unreachable ({_first_line(exc)}): training goes "
            f"on; metrics (the last {METRIC_BUFFER_POINTS:,} points) and artifacts are kept locally and "
            "sent when it is back"
        )

    def usable(self, probe: Any, *, every: float | None = None) -> bool:
        """Online, or back after a probe (at most one every `probe_every_s()` seconds)."""
        with self._lock:
            if self.online:
                return True
            if time.time() < self._next_probe:
                return False
            self._next_probe = time.time() + (every if every is not None else probe_every_s())
        if not probe():
            return False
        with self._lock:
            if self.online:
                return True
            self.online = True
            away = time.time() - self.lost_at
        _say(f"the tracking server {store_uri()} is back after {away:.0f} s: sending what was kept")
        return True

    def probe_now(self) -> None:
        with self._lock:
            self._next_probe = 0.0


HEALTH = _Health()


class RunLogger:
    """Logs to one MLflow run, or does nothing (DDP ranks other than 0, or no run).

    Metrics go into a buffer that a sender thread ships in batches: the training loop never waits for
    the store, and a point leaves the buffer only once the store has it. Params, tags and artifacts are
    sent at once while the store answers. When a call fails and the store does not answer a probe, the
    process is offline (`HEALTH`, one warning line): training goes on, metrics stay in the buffer (the
    last METRIC_BUFFER_POINTS; older ones are dropped and counted) and the other calls queue in order,
    their files staying where they are on disk. The sender probes the store every `probe_every_s()`
    seconds and, once it answers (one line), sends everything in order. `finish` ends the run; if the
    store is still away then, what is left goes to files in `local_dir` for `seqtrack-mlflow sync`.
    """

    def __init__(self, run_id: str | None, local_dir: Path | None = None):
        self.run_id = run_id
        self.local_dir = local_dir  # where pending uploads are written if the run ends offline
        self._client = MlflowClient() if run_id else None
        self._cond = threading.Condition()
        self._points: deque[Metric] = deque()
        self._ops: deque[dict[str, Any]] = deque()
        self._inflight = 0
        self.dropped_points = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if run_id:
            _OPEN_LOGGERS.add(self)

    @property
    def enabled(self) -> bool:
        return self.run_id is not None

    # -- the calls of the steps ---------------------------------------------------------------------

    def log_params(self, params: Mapping[str, Any]) -> dict[str, str]:
        """Log the keys the run does not hold yet; returns {key: held value} for keys held with another
        value (a resumed run), whose new values go to `resumed.<key>` ({} while the store is away: the
        params are queued and the same rule applies when they are sent)."""
        if not self._client:
            return {}
        op = {"op": "params", "params": {k: param_str(v) for k, v in params.items()}}
        if self._queued(op):
            return {}
        try:
            existing = dict(self._client.get_run(self.run_id).data.params)
        except Exception as exc:  # noqa: BLE001 - offline, or a real error (re-raised)
            self._offline_or_raise(exc, op)
            return {}
        differing = {
            k: existing[k] for k, v in params.items() if k in existing and not same_param(existing[k], v)
        }
        self._call(op)
        return differing

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self._client and tags:
            self._call({"op": "tags", "tags": {k: str(v) for k, v in tags.items()}})

    def describe(self, text: str) -> None:
        """The run's description in the MLflow UI (its "note")."""
        self.set_tags({DESCRIPTION_TAG: text})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Buffered: the training loop never waits for the tracking store (see the class)."""
        if not self._client:
            return
        now = int(time.time() * 1000)
        with self._cond:
            for key, value in metrics.items():
                if len(self._points) >= METRIC_BUFFER_POINTS:
                    self._points.popleft()
                    self.dropped_points += 1
                self._points.append(Metric(key, float(value), now, step or 0))
        if self._thread is None:
            self._start_sender()

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self._client:
            self._call({"op": "artifact", "path": str(Path(path).resolve()), "artifact_path": artifact_path})

    def log_artifacts(self, folder: Path, artifact_path: str) -> None:
        if self._client:
            self._call(
                {"op": "artifacts", "path": str(Path(folder).resolve()), "artifact_path": artifact_path}
            )

    def log_dict(self, values: dict, artifact_file: str) -> None:
        if self._client:
            self._call(
                {"op": "dict", "values": json.loads(json.dumps(values)), "artifact_file": artifact_file}
            )

    def log_dataset(self, index: Any, name: str, context: str) -> None:
        """Record a `datasets.Dataset` as this run's input (the lineage the UI shows). Lineage is worth a
        warning, not a failed run: a store error here is reported and training goes on."""
        if not self._client:
            return
        if not HEALTH.online:
            print(f"warning: the dataset input {name} was not recorded: the tracking server is away")
            return
        with warnings.catch_warnings():
            # MLflow's schema inference warns about integer columns (the index has no missing values)
            # and pandas deprecations inside MLflow: noise for a user.
            warnings.simplefilter("ignore")
            try:
                mlflow.log_input(mlflow.data.from_huggingface(index, name=name), context=context)
            except Exception as exc:  # noqa: BLE001 - any store error
                print(f"warning: the dataset input {name} was not recorded: {str(exc).splitlines()[0]}")

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything logged so far is in the store (True), or the store is away (False)."""
        if not self._client:
            return True
        if self._thread is None:
            self._start_sender()
        deadline = None if timeout is None else time.time() + timeout
        self._wake.set()
        with self._cond:
            while self._pending():
                if not HEALTH.online or (deadline is not None and time.time() > deadline):
                    return False
                self._cond.wait(0.2)
        return True

    def finish(self) -> Path | None:
        """Send what is pending, awaiting an absent store up to `final_wait_s()` seconds; stop the sender.
        Returns None when all is in the store, else the folder the rest was written to (`persist`)."""
        if not self._client:
            return None
        try:
            if self.flush():
                return None
            HEALTH.probe_now()
            deadline = time.time() + final_wait_s()
            while time.time() < deadline:
                self._wake.set()
                if self.flush(timeout=max(0.0, deadline - time.time())):
                    return None
                HEALTH.usable(self._probe, every=min(5.0, probe_every_s()))
                if not HEALTH.online:
                    time.sleep(min(1.0, max(0.0, deadline - time.time())))
            return None if self.flush(timeout=0) else self.local_folder()
        finally:
            self._stop.set()
            self._wake.set()
            if self._thread is not None:
                self._thread.join(timeout=5)
            _OPEN_LOGGERS.discard(self)

    def local_folder(self) -> Path:
        return Path(self.local_dir or Path("outputs") / str(self.run_id)).resolve()

    def persist(self, status: str) -> tuple[Path, int, int]:
        """Write the pending metrics and calls, and the run's final status, beside the run's local files;
        returns (folder, metric points, other calls). Appends to what an earlier session left there."""
        folder = self.local_folder()
        folder.mkdir(parents=True, exist_ok=True)
        with self._cond:
            points, ops = list(self._points), list(self._ops)
            self._points.clear()
            self._ops.clear()
        with open(folder / PENDING_METRICS, "a") as f:
            for m in points:
                f.write(
                    json.dumps({"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step})
                )
                f.write("\n")
        with open(folder / PENDING_OPS, "a") as f:
            for op in ops:
                f.write(json.dumps(op) + "\n")
        manifest_path = folder / PENDING_MANIFEST
        before = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        manifest = {
            "run_id": self.run_id,
            "tracking_uri": store_uri(),
            "status": status,
            "end_time": int(time.time() * 1000),
            "dropped_metric_points": int(before.get("dropped_metric_points", 0)) + self.dropped_points,
        }
        tmp = manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=1))
        tmp.replace(manifest_path)
        return folder, len(points), len(ops)

    # -- sending --------------------------------------------------------------------------------------

    def _pending(self) -> bool:
        return bool(self._points or self._ops or self._inflight)

    def _queued(self, op: dict[str, Any]) -> bool:
        """Queue `op` behind earlier ones, or while the store is away (True); False: send it now."""
        with self._cond:
            if not self._ops and HEALTH.online:
                return False
            if op["op"] == "artifact":  # the training log is re-uploaded at every checkpoint: keep one
                for i in range(len(self._ops) - 1, 0, -1):  # index 0 may be being sent
                    if self._ops[i] == op:
                        del self._ops[i]
            self._ops.append(op)
        if self._thread is None:
            self._start_sender()
        self._wake.set()
        return True

    def _call(self, op: dict[str, Any]) -> None:
        if self._queued(op):
            return
        try:
            self._apply(op)
        except Exception as exc:  # noqa: BLE001 - offline, or a real error (re-raised)
            self._offline_or_raise(exc, op)

    def _offline_or_raise(self, exc: Exception, op: dict[str, Any]) -> None:
        """A failed call: the store answers -> the call's own error, raised as before; else offline, and
        the call waits in the queue."""
        if self._probe():
            raise exc
        HEALTH.lost(exc)
        with self._cond:
            self._ops.append(op)
        if self._thread is None:
            self._start_sender()

    def _probe(self) -> bool:
        try:
            self._client.get_run(self.run_id)
            return True
        except Exception:  # noqa: BLE001 - unreachable (or gone: the sender stops trying)
            return False

    def _apply(self, op: dict[str, Any]) -> None:
        apply_op(self._client, self.run_id, op)

    def _start_sender(self) -> None:
        with self._cond:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._send_loop, name="seqtrack-metrics", daemon=True)
        self._thread.start()

    def _send_loop(self) -> None:
        while True:
            stopping = self._stop.is_set()
            if HEALTH.usable(self._probe):
                self._send_pending()
            with self._cond:
                self._cond.notify_all()
            if stopping:
                return
            self._wake.wait(SEND_EVERY_S)
            self._wake.clear()

    def _send_pending(self) -> None:
        while HEALTH.online:
            with self._cond:
                op = self._ops[0] if self._ops else None
                chunk: list[Metric] = []
                if op is None:
                    while self._points and len(chunk) < BATCH_POINTS:
                        chunk.append(self._points.popleft())
                    self._inflight = len(chunk)
            if op is None and not chunk:
                return
            try:
                if op is not None:
                    self._apply(op)
                else:
                    self._client.log_batch(self.run_id, metrics=chunk)
            except Exception as exc:  # noqa: BLE001 - offline, or the store refuses this item
                reachable = self._probe()
                with self._cond:
                    self._inflight = 0
                    if op is not None and reachable:
                        self._ops.popleft()
                    elif chunk and not reachable:
                        self._points.extendleft(reversed(chunk))
                        while len(self._points) > METRIC_BUFFER_POINTS:
                            self._points.popleft()
                            self.dropped_points += 1
                if reachable:  # the store answers but refuses this item: it cannot ever be sent
                    what = op["op"] if op is not None else f"{len(chunk)} metric points"
                    _say(
                        f"warning: the tracking store refused {what} for run {self.run_id}: "
                        f"{_first_line(exc)}"
                    )
                    continue
                HEALTH.lost(exc)
                return
            with self._cond:
                if op is not None:
                    self._ops.popleft()
                self._inflight = 0
                self._cond.notify_all()


_OPEN_LOGGERS: weakref.WeakSet[RunLogger] = weakref.WeakSet()


@atexit.register
def _flush_open_loggers() -> None:
    """A logger nobody finished (a `RunLogger(run_id)` for one call) still sends what it holds."""
    for logger in list(_OPEN_LOGGERS):
        with contextlib.suppress(Exception):
            logger.flush(timeout=30)


def apply_op(client: MlflowClient, run_id: str, op: dict[str, Any]) -> None:
    """Send one queued call (`RunLogger` and `seqtrack-mlflow sync`)."""
    kind = op["op"]
    if kind == "params":
        existing = dict(client.get_run(run_id).data.params)
        params = op["params"]
        new = {k: v for k, v in params.items() if k not in existing}
        new.update(
            {f"resumed.{k}": v for k, v in params.items() if k in existing and not same_param(existing[k], v)}
        )
        new = {k: v for k, v in new.items() if k not in existing}
        if new:
            client.log_batch(run_id, params=[Param(k, v) for k, v in new.items()])
    elif kind == "tags":
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in op["tags"].items()])
    elif kind == "artifact":
        client.log_artifact(run_id, op["path"], artifact_path=op["artifact_path"])
    elif kind == "artifacts":
        client.log_artifacts(run_id, op["path"], artifact_path=op["artifact_path"])
    elif kind == "dict":
        client.log_dict(run_id, op["values"], op["artifact_file"])
    else:  # pragma: no cover - written by this module only
        raise ValueError(f"unknown pending call {kind!r}")


def same_param(logged: str, value: Any) -> bool:
    """`1e-4` and 0.0001, `true` and True, `8` and 8 are the same setting."""
    if logged == param_str(value):
        return True
    if isinstance(value, bool):
        return logged.strip().lower() == str(value).lower()
    if isinstance(value, str):  # a queued param (already a string)
        a, b = logged.strip().lower(), value.strip().lower()
        if {a, b} & {"true", "false"}:
            return a == b
        try:
            return float(a) == float(b)
        except ValueError:
            return False
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

    The tracking server may go away meanwhile (see `RunLogger`): when it is still away at the end, the
    pending metrics, artifacts and the final status are written to the run's local folder and the run
    ends with one line naming that folder and `seqtrack-mlflow sync <folder>`, the command that uploads
    them: a `RunNotUploaded` error (exit status 2) after a run that succeeded, a warning line beside the
    run's own error otherwise.
    """
    if not enabled:
        yield RunLogger(None)
        return
    if system_metrics:
        _require_psutil()
    fail_fast_http()
    run = mlflow.start_run(
        run_id=run_id, run_name=None if run_id else run_name, nested=nested, log_system_metrics=system_metrics
    )
    logger = RunLogger(run.info.run_id)
    status = "FINISHED"
    try:
        yield logger
    except (KeyboardInterrupt, Interrupted) as exc:
        # Stopped by a signal, not failed: KILLED. The tag survives `mlflow run`'s launcher, which
        # marks its own run FAILED after a Ctrl-C whatever the run's status (README, "Failures").
        status = "KILLED"
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        with contextlib.suppress(Exception):
            logger.set_tags({INTERRUPTED_TAG: signal.Signals(signum).name})
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        message = _end_run(logger, status)
        if message and status == "FINISHED":
            raise RunNotUploaded(message)
        if message:
            _say(f"warning: {message}")


class RunNotUploaded(TrackingError):
    """The run ended while the tracking server was away: its pending data waits in a local folder."""


def _end_run(logger: RunLogger, status: str) -> str | None:
    """End the active run with `status`; None, or the one line saying where the pending data waits."""
    folder = logger.finish()
    if folder is None:
        try:
            mlflow.end_run(status)
            return None
        except Exception as exc:  # noqa: BLE001 - the server went away at the last moment
            HEALTH.lost(exc)
    else:
        with contextlib.suppress(Exception):  # pops the active run; the store cannot record the end
            mlflow.end_run(status)
    from mlflow.tracking import fluent

    monitor = fluent.run_id_to_system_metrics_monitor.pop(logger.run_id, None)
    if monitor is not None:
        with contextlib.suppress(Exception):
            monitor.finish()
    folder, points, calls = logger.persist(status)
    dropped = f", {logger.dropped_points} older points dropped" if logger.dropped_points else ""
    return (
        f"the tracking server {store_uri()} is unreachable: run {logger.run_id} ended {status} and is "
        f"kept in {folder} ({points} metric points and {calls} artifacts/params/tags not uploaded{dropped}); "
        f"upload them with: seqtrack-mlflow sync {folder}"
    )


def sync_run_folder(folder: Path) -> str:
    """`seqtrack-mlflow sync FOLDER`: upload what a run that ended offline left in its local folder
    (metrics, then artifacts/params/tags in their order) and set the run's final status. Each part is
    removed once sent, so running it again after a failure sends only the rest."""
    folder = Path(folder)
    manifest_path = folder / PENDING_MANIFEST
    if not manifest_path.is_file():
        raise TrackingError(
            f"{folder} holds no {PENDING_MANIFEST}: nothing to upload (give a run's local folder)"
        )
    manifest = json.loads(manifest_path.read_text())
    run_id = manifest["run_id"]
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.set_tracking_uri(manifest["tracking_uri"])
    fail_fast_http()
    client = MlflowClient()
    try:
        client.get_run(run_id)
    except Exception as exc:  # noqa: BLE001 - unreachable or unknown: one line either way
        raise TrackingError(
            f"run {run_id} cannot be reached in {store_uri()} ({_first_line(exc)}): start the tracking "
            "server (or set MLFLOW_TRACKING_URI to the store that holds the run) and run this again"
        ) from None
    points = 0
    metrics_path = folder / PENDING_METRICS
    if metrics_path.exists():
        batch: list[Metric] = []
        for line in metrics_path.read_text().splitlines():
            if line.strip():
                m = json.loads(line)
                batch.append(Metric(m["key"], float(m["value"]), int(m["timestamp"]), int(m["step"])))
        for i in range(0, len(batch), BATCH_POINTS):
            client.log_batch(run_id, metrics=batch[i : i + BATCH_POINTS])
        points = len(batch)
        metrics_path.unlink()
    ops_path = folder / PENDING_OPS
    calls = 0
    if ops_path.exists():
        ops = [json.loads(line) for line in ops_path.read_text().splitlines() if line.strip()]
        while ops:
            apply_op(client, run_id, ops[0])
            ops.pop(0)
            calls += 1
            tmp = ops_path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(op) + "\n" for op in ops))
            tmp.replace(ops_path)
        ops_path.unlink()
    dropped = int(manifest.get("dropped_metric_points", 0))
    if dropped:
        client.set_tag(run_id, "seqtrack.dropped_metric_points", str(dropped))
    client.set_terminated(run_id, manifest["status"], end_time=int(manifest["end_time"]))
    manifest_path.unlink()
    return (
        f"uploaded {points} metric points and {calls} artifacts/params/tags to run {run_id} in "
        f"{store_uri()}; status {manifest['status']}"
    )


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
        require_store_for(f"checkpoint {target}")
        return _download_checkpoint(target, download_dir, target), split_runs_uri(target)[0]
    if RUN_ID.match(target):
        require_store_for(f"checkpoint {target}")
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
        why = f"{str(exc).splitlines()[0]}; tracking store {store_uri()}"
        raise CheckpointError(_not_found(target, why)) from exc


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
