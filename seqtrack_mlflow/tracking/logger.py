"""`RunLogger`: what the steps log to one run, sent by a thread so that training never waits for the store."""

from __future__ import annotations

import atexit
import contextlib
import json
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.messages import first_line
from seqtrack_mlflow.tracking.health import (
    HEALTH,
    METRIC_BUFFER_POINTS,
    Health,
    final_wait_s,
    probe_every_s,
    say,
)
from seqtrack_mlflow.tracking.outbox import BATCH_POINTS, Op, Outbox, apply_op
from seqtrack_mlflow.tracking.params import differing_params, param_str

SEND_EVERY_S = 1.0  # the sender thread ships buffered metrics this often
DESCRIPTION_TAG = "mlflow.note.content"  # what the UI shows as the run's description


class RunLogger:
    """Logs to one MLflow run, or does nothing (DDP ranks other than 0, or no run).

    Metrics go into a buffer that a sender thread ships in batches: the training loop never waits for
    the store, and a point leaves the buffer only once the store has it. Other calls are sent at once
    while the store answers. When a call fails and the store does not answer a probe, the process is
    offline (`health`, one warning line): training goes on, metrics stay in the buffer (the last
    METRIC_BUFFER_POINTS; older ones are dropped and counted), other calls queue in order as outbox ops
    (their files stay on disk). The sender probes the store every `probe_every_s()` seconds and, once it
    answers (one line), sends everything in order. If the store is still away when the run ends,
    `persist` writes what is left as the run's `Outbox` for `seqtrack-mlflow sync`.
    `client` (an MlflowClient) and `health` (the process's HEALTH) may be given: tests use a stub client.
    """

    def __init__(
        self,
        run_id: str | None,
        local_dir: Path | None = None,
        *,
        client: Any | None = None,
        health: Health | None = None,
    ):
        self.run_id = run_id
        self.local_dir = local_dir  # where pending uploads are written if the run ends offline
        self.health = health if health is not None else HEALTH
        self._client = (client if client is not None else MlflowClient()) if run_id else None
        self._cond = threading.Condition()
        self._points: deque[Metric] = deque()
        self._ops: deque[Op] = deque()
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
        differing = differing_params(existing, params)
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

    def release(self, path: Path, artifact_path: str) -> None:
        """Remove `path` once a local artifact store holds its upload under `artifact_path` (the store
        would hold a second copy on this machine; `tracking.stored`). Queued behind the upload: a file
        the store does not have yet stays, in the outbox too."""
        if self._client:
            self._call({"op": "release", "path": str(Path(path).resolve()), "artifact_path": artifact_path})

    def prune(self, names: list[str], artifact_path: str, local_dir: Path) -> None:
        """Remove the checkpoints `names` from the run's `artifact_path` and their uploaded copies in
        `local_dir`, after every call logged before (their uploads) has been sent."""
        if self._client and names:
            op = {"op": "prune", "names": list(names), "artifact_path": artifact_path}
            self._call({**op, "path": str(Path(local_dir).resolve())})

    def log_model(self, checkpoint: Path, config: Mapping[str, Any]) -> None:
        """The tracker of `checkpoint` with the tracker settings `config` as the run's MLflow model
        (`tracker_model`): sent like an artifact, so while the store is away it waits in the queue and,
        if the run ends offline, in the outbox for `seqtrack-mlflow sync`."""
        if self._client:
            self._call({"op": "model", "path": str(Path(checkpoint).resolve()), "config": dict(config)})

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
        if not self.health.online:
            print(f"warning: the dataset input {name} was not recorded: the tracking server is away")
            return
        with warnings.catch_warnings():
            # MLflow's schema inference warns about integer columns (the index has no missing values)
            # and pandas deprecations inside MLflow: noise for a user.
            warnings.simplefilter("ignore")
            try:
                mlflow.log_input(mlflow.data.from_huggingface(index, name=name), context=context)
            except Exception as exc:  # noqa: BLE001 - any store error
                print(f"warning: the dataset input {name} was not recorded: {first_line(exc)}")

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
                if not self.health.online or (deadline is not None and time.time() > deadline):
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
            self.health.probe_now()
            deadline = time.time() + final_wait_s()
            while time.time() < deadline:
                self._wake.set()
                if self.flush(timeout=max(0.0, deadline - time.time())):
                    return None
                self.health.usable(self._probe, every=min(5.0, probe_every_s()))
                if not self.health.online:
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
        """Write the pending metrics and calls, and the run's final status, as the run's `Outbox` beside
        its local files; returns (folder, metric points, other calls). Appends to an earlier session's.
        Files are recorded by their path in the folder (copied in when logged from elsewhere): `sync`
        uploads nothing outside it."""
        folder = self.local_folder()
        with self._cond:
            points, ops = list(self._points), list(self._ops)
            self._points.clear()
            self._ops.clear()
        Outbox(folder).write(
            run_id=str(self.run_id), status=status, points=points, ops=ops, dropped_points=self.dropped_points
        )
        return folder, len(points), len(ops)

    # -- sending --------------------------------------------------------------------------------------

    def _pending(self) -> bool:
        return bool(self._points or self._ops or self._inflight)

    def _queued(self, op: Op) -> bool:
        """Queue `op` behind earlier ones, or while the store is away (True); False: send it now."""
        with self._cond:
            if not self._ops and self.health.online:
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

    def _call(self, op: Op) -> None:
        if self._queued(op):
            return
        try:
            apply_op(self._client, self.run_id, op)
        except Exception as exc:  # noqa: BLE001 - offline, or a real error (re-raised)
            self._offline_or_raise(exc, op)

    def _offline_or_raise(self, exc: Exception, op: Op) -> None:
        """A failed call: the store answers -> the call's own error, raised as before; else offline, and
        the call waits in the queue."""
        if self._probe():
            raise exc
        self.health.lost(exc)
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

    def _start_sender(self) -> None:
        with self._cond:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._send_loop, name="seqtrack-metrics", daemon=True)
        self._thread.start()

    def _send_loop(self) -> None:
        while True:
            stopping = self._stop.is_set()
            if self.health.usable(self._probe):
                self._send_pending()
            with self._cond:
                self._cond.notify_all()
            if stopping:
                return
            self._wake.wait(SEND_EVERY_S)
            self._wake.clear()

    def _send_pending(self) -> None:
        while self.health.online:
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
                    apply_op(self._client, self.run_id, op)
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
                    say(
                        f"warning: the tracking store refused {what} for run {self.run_id}: {first_line(exc)}"
                    )
                    continue
                self.health.lost(exc)
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
