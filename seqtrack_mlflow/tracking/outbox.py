"""The outbox: the calls a run could not send while the tracking store was away, and their replay.

A `RunLogger` queues a call it cannot send as an op (a JSON-able dict: params, tags, an artifact file
or folder, a dict artifact, the tracker as an MLflow model, the release of an uploaded checkpoint's
local copy, the pruning of checkpoints `keep_checkpoints` no longer keeps) and sends it later with
`apply_op`. When the run ends with the store still away, its queue and metric buffer become an
`Outbox` in the run's local folder:

    pending_upload.json    the run, its store, its final status and end time, metric points dropped
    pending_metrics.jsonl  one metric point a line
    pending_ops.jsonl      one op a line, in the order they were logged
    pending_files/         copies of files logged from outside the folder (the record stays self-contained)

An op's file or folder is recorded relative to the folder: the folder may be moved or copied to another
machine, and `sync` uploads nothing outside it (`outbox_check`). `Outbox.replay` (what
`seqtrack-mlflow sync` runs) checks every record first, then sends them through the same `apply_op` and
removes each part once sent, so running it again after a failure sends only the rest.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from seqtrack_mlflow.fileio import atomic_write_text
from seqtrack_mlflow.messages import first_line
from seqtrack_mlflow.tracking.health import say
from seqtrack_mlflow.tracking.outbox_check import read_manifest, read_metrics, read_ops, store_refusal
from seqtrack_mlflow.tracking.params import params_to_log
from seqtrack_mlflow.tracking.store import store_uri
from seqtrack_mlflow.tracking.stored import link_model_copy, prune_artifacts, release_local_copy
from seqtrack_mlflow.tracking.tracker_model import log_tracker_model

PENDING_MANIFEST = "pending_upload.json"  # what `seqtrack-mlflow sync` reads (run, store, final status)
PENDING_METRICS = "pending_metrics.jsonl"
PENDING_OPS = "pending_ops.jsonl"  # artifacts, tags, params, dicts, models, in the order they were logged
PENDING_FILES = "pending_files"  # copies of files logged from outside the run's folder
BATCH_POINTS = 1000  # MLflow's limit of metrics per log_batch
DROPPED_TAG = "seqtrack.dropped_metric_points"  # set by the replay when the buffer overflowed
CHECKPOINT_DIR = "checkpoints"  # a train run's checkpoints in its artifacts (as train/checkpoints.py)

Op = dict[str, Any]


def apply_op(client: Any, run_id: str, op: Op) -> None:
    """Send one queued call to the run (`client`: an MlflowClient). The only place an op is sent."""
    kind = op["op"]
    if kind == "params":
        new = params_to_log(dict(client.get_run(run_id).data.params), op["params"])
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
    elif kind == "model":  # through MLflow's fluent API, to the store `client` talks to (the process's)
        model_id = log_tracker_model(run_id, Path(op["path"]), op["config"]).removeprefix("models:/")
        link_model_copy(client, run_id, model_id, Path(op["path"]).name, CHECKPOINT_DIR)
    elif kind == "release":  # after the file's upload (queued behind it): the local copy, if the store is
        release_local_copy(client, run_id, Path(op["path"]), op["artifact_path"])
    elif kind == "prune":
        folder = Path(op["path"]) if op["path"] is not None else None
        prune_artifacts(client, run_id, op["artifact_path"], op["names"], folder)
    else:  # pragma: no cover - written by this package only
        raise ValueError(f"unknown pending call {kind!r}")


def metric_record(m: Metric) -> dict[str, Any]:
    return {"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step}


class Outbox:
    """The pending data of one run in its local folder (see the module)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.manifest_path = self.folder / PENDING_MANIFEST
        self.metrics_path = self.folder / PENDING_METRICS
        self.ops_path = self.folder / PENDING_OPS

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def manifest(self) -> dict[str, Any]:
        """The manifest, checked (an OutboxError names what is wrong with it)."""
        return read_manifest(self.manifest_path)

    def write(
        self,
        *,
        run_id: str,
        status: str,
        points: Iterable[Metric],
        ops: Iterable[Op],
        dropped_points: int,
        tracking_uri: str | None = None,
    ) -> None:
        """Append `points` and `ops` to what an earlier session left here; the manifest (written last,
        atomically) names the run and its store (this process's by default), says its final `status` and
        adds `dropped_points` to those counted before."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_path, "a") as f:
            for m in points:
                f.write(json.dumps(metric_record(m)))
                f.write("\n")
        with open(self.ops_path, "a") as f:
            for op in ops:
                record = self._record(op)
                if record is not None:
                    f.write(json.dumps(record) + "\n")
        before = json.loads(self.manifest_path.read_text()) if self.manifest_path.exists() else {}
        manifest = {
            "run_id": run_id,
            "tracking_uri": tracking_uri if tracking_uri is not None else store_uri(),
            "status": status,
            "end_time": int(time.time() * 1000),
            "dropped_metric_points": int(before.get("dropped_metric_points", 0)) + dropped_points,
        }
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=1))

    def _record(self, op: Op) -> Op | None:
        """`op` as recorded: a file or folder by its path relative to the folder; one that lies elsewhere
        is copied into PENDING_FILES first (None, with a warning, when it is gone or cannot be copied)."""
        if op["op"] == "prune":  # a folder outside this one: its copies are not this outbox's to remove
            root = self.folder.resolve()
            local = Path(op["path"]).resolve() if op["path"] else None
            ours = local is not None and local.is_relative_to(root)
            return {**op, "path": local.relative_to(root).as_posix() if ours else None}
        if op["op"] not in ("artifact", "artifacts", "model", "release"):
            return op
        root, path = self.folder.resolve(), Path(op["path"]).resolve()
        if op["op"] == "release" and not (path.is_file() and path.is_relative_to(root)):
            return None  # gone already, or not ours to remove
        if not path.exists():
            say(f"warning: {path} is gone: it is not kept for `seqtrack-mlflow sync`")
            return None
        if not path.is_relative_to(root):
            copy = root / PENDING_FILES / uuid.uuid4().hex[:8] / path.name
            try:
                copy.parent.mkdir(parents=True)
                if op["op"] == "artifacts":  # (not the run folder itself, should it lie inside)
                    shutil.copytree(path, copy, ignore=_skipping(root))
                else:
                    shutil.copy2(path, copy)
            except OSError as exc:
                say(f"warning: {path} is not kept for `seqtrack-mlflow sync`: {first_line(exc)}")
                return None
            path = copy
        return {**op, "path": path.relative_to(root).as_posix()}

    def replay(self, client: Any) -> tuple[int, int]:
        """Send everything to the manifest's run (metrics, then the ops in order), set its final status and
        remove the outbox; returns (metric points, ops) sent. Every record is checked before anything is
        sent (an OutboxError names the first bad one). A failure raises and leaves the unsent part."""
        manifest = self.manifest()
        run_id = manifest["run_id"]
        points = read_metrics(self.metrics_path) if self.metrics_path.exists() else []
        ops = read_ops(self.ops_path, self.folder) if self.ops_path.exists() else []
        sent = 0
        while points:
            try:
                client.log_batch(run_id, metrics=[m for _, m in points[:BATCH_POINTS]])
            except MlflowException as exc:
                raise store_refusal(self.metrics_path, None, exc) from None
            sent += len(points[:BATCH_POINTS])
            points = points[BATCH_POINTS:]
            atomic_write_text(self.metrics_path, "".join(line + "\n" for line, _ in points))
        self.metrics_path.unlink(missing_ok=True)
        calls = 0
        while ops:
            try:
                apply_op(client, run_id, ops[0][2])
            except MlflowException as exc:  # the first line of the file once one was sent
                raise store_refusal(self.ops_path, 1 if calls else ops[0][0], exc) from None
            ops.pop(0)
            calls += 1
            atomic_write_text(self.ops_path, "".join(line + "\n" for _, line, _ in ops))
        self.ops_path.unlink(missing_ok=True)
        dropped = int(manifest.get("dropped_metric_points", 0))
        if dropped:
            client.set_tag(run_id, DROPPED_TAG, str(dropped))
        client.set_terminated(run_id, manifest["status"], end_time=int(manifest["end_time"]))
        copies = self.folder / PENDING_FILES
        if copies.is_dir() and not copies.is_symlink():
            shutil.rmtree(copies, ignore_errors=True)  # sent: the run's artifacts hold them now
        self.manifest_path.unlink()
        return sent, calls


def _skipping(folder: Path) -> Callable[[str, list[str]], list[str]]:
    """A copytree `ignore` that leaves out `folder` (an outbox does not copy itself)."""
    return lambda where, names: [n for n in names if Path(where, n) == folder]
