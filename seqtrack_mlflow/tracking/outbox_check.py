"""Reading an outbox as untrusted input: `outputs/<run_id>/` folders get copied between machines.

`seqtrack-mlflow sync` reads every record before it sends anything. A record is accepted only in the form
this package writes: a known op with its keys and their types, artifact paths that name an existing file
or folder inside the run's folder once every symlink is resolved (relative to it, or absolute for
records of older versions), and artifact destinations without `..`. Anything else is refused with one
line naming the file and line: nothing is sent from a folder that holds a record not ours.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from mlflow.entities import Metric

from seqtrack_mlflow.messages import first_line
from seqtrack_mlflow.tracking.store import TrackingError
from seqtrack_mlflow.tracking.stored import PRUNABLE

STATUSES = ("FINISHED", "FAILED", "KILLED")
RUN_ID = re.compile(r"[a-zA-Z0-9][\w\-]{0,255}")  # MLflow's own rule for a run id
OP_KEYS: dict[str, dict[str, tuple[type, ...]]] = {
    "params": {"params": (dict,)},
    "tags": {"tags": (dict,)},
    "artifact": {"path": (str,), "artifact_path": (str, type(None))},
    "artifacts": {"path": (str,), "artifact_path": (str, type(None))},
    "dict": {"values": (dict, list), "artifact_file": (str,)},
    "model": {"path": (str,), "config": (dict,)},  # the checkpoint file and the tracker settings
    "release": {"path": (str,), "artifact_path": (str,)},  # an uploaded file's local copy
    "prune": {"names": (list,), "artifact_path": (str,), "path": (str, type(None))},  # epoch_N.ckpt names
}
SETTING_VALUE = (str, int, float, bool, type(None))

Op = dict[str, Any]


class OutboxError(TrackingError):
    """A record of a run's outbox that this package did not write: one line naming the file and line."""


class _Bad(ValueError):
    """Why one record is refused (becomes an OutboxError with its file and line)."""


def refusal(path: Path, line: int | None, why: str) -> OutboxError:
    where = f"{path}, line {line}" if line is not None else str(path)
    return OutboxError(
        f"{where}: {why}: nothing was uploaded; sync sends only records in the form seqtrack-mlflow writes: "
        "fix or delete that line if the folder is yours, else do not upload it"
    )


def store_refusal(path: Path, line: int | None, exc: BaseException) -> OutboxError:
    """The store answered but would not take a record (a name MLflow refuses, a failed request)."""
    where = f"{path}, line {line}" if line is not None else str(path)
    return OutboxError(
        f"{where}: the tracking store did not take this record ({first_line(exc)}): what came before it "
        "is sent and removed from the folder; fix or delete the record (or wait for the store) and run "
        "sync again"
    )


def shown(text: object) -> str:
    """A value from the file, quoted and short (never more than one line)."""
    r = repr(text)
    return r if len(r) <= 120 else r[:117] + "..."


def _number(value: Any, kind: type) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool)


def plain_file(path: Path) -> Path:
    """`path` itself must be a regular file, not a symlink to something else."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise refusal(path, None, "not a regular file (a symlink or a special file)")
    return path


def json_lines(path: Path) -> Iterator[tuple[int, str, Any]]:
    """(line number, text, object) of each non-blank line; malformed JSON is refused."""
    with open(plain_file(path), "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
                record = json.loads(text) if text.strip() else None
            except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
                raise refusal(path, n, f"not a JSON record ({str(exc)[:80]})") from None
            if text.strip():
                yield n, text.rstrip("\n"), record


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest, refused unless it names a run id, a final status and numbers where numbers go."""
    try:
        manifest = json.loads(plain_file(path).read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:
        raise refusal(path, None, f"not a JSON manifest ({str(exc)[:80]})") from None
    if not isinstance(manifest, dict):
        raise refusal(path, None, "not a JSON object")
    for key, kind in (("run_id", str), ("status", str), ("end_time", int)):
        if not _number(manifest.get(key), kind):
            raise refusal(path, None, f"{key} missing or not a {kind.__name__}")
    if not RUN_ID.fullmatch(manifest["run_id"]):
        raise refusal(path, None, f"run_id {shown(manifest['run_id'])} is not an MLflow run id")
    if manifest["status"] not in STATUSES:
        raise refusal(path, None, f"status {shown(manifest['status'])} is not one of {', '.join(STATUSES)}")
    dropped = manifest.get("dropped_metric_points", 0)
    if not _number(dropped, int) or dropped < 0:
        raise refusal(path, None, "dropped_metric_points is not a count")
    if not isinstance(manifest.get("tracking_uri", ""), str):
        raise refusal(path, None, "tracking_uri is not text")
    return manifest


def read_metrics(path: Path) -> list[tuple[str, Metric]]:
    """(the line as written, the point) for each metric point; the first malformed one is refused."""
    points = []
    for n, text, record in json_lines(path):
        try:
            points.append((text, _metric(record)))
        except _Bad as exc:
            raise refusal(path, n, str(exc)) from None
    return points


def _metric(record: Any) -> Metric:
    if not isinstance(record, dict) or not isinstance(record.get("key"), str):
        raise _Bad("not a metric point (key, value, timestamp, step)")
    if not (_number(record.get("value"), int) or _number(record.get("value"), float)):
        raise _Bad(f"metric {shown(record['key'])}: value is not a number")
    for key in ("timestamp", "step"):
        if not _number(record.get(key), int):
            raise _Bad(f"metric {shown(record['key'])}: {key} is not an integer")
    return Metric(record["key"], float(record["value"]), record["timestamp"], record["step"])


def read_ops(path: Path, folder: Path) -> list[tuple[int, str, Op]]:
    """(line number, the line as written, the op to send) for each record; file paths become absolute,
    resolved paths inside `folder`. The first record that is not ours is refused."""
    root = folder.resolve()
    ops = []
    for n, text, record in json_lines(path):
        try:
            ops.append((n, text, checked_op(record, root)))
        except _Bad as exc:
            raise refusal(path, n, str(exc)) from None
    return ops


def checked_op(record: Any, root: Path) -> Op:
    """`record` as sent (see the module), or _Bad saying why not. `root`: the resolved run folder."""
    if not isinstance(record, dict) or record.get("op") not in OP_KEYS:
        what = record.get("op") if isinstance(record, dict) else record
        raise _Bad(f"unknown op {shown(what)} (known: {', '.join(OP_KEYS)})")
    kind = record["op"]
    for key, types in OP_KEYS[kind].items():
        if key not in record:
            raise _Bad(f"the {kind} op has no {key!r}")
        if not isinstance(record[key], types):
            raise _Bad(f"the {kind} op's {key!r} is not a {' or '.join(t.__name__ for t in types)}")
    if kind in ("params", "tags"):
        values = record[kind]
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
            raise _Bad(f"{kind} that are not text: text keys and values only")
        return {"op": kind, kind: values}
    if kind == "dict":
        return {"op": kind, "values": record["values"], "artifact_file": destination(record["artifact_file"])}
    if kind == "model":
        config = record["config"]
        if not all(isinstance(k, str) and isinstance(v, SETTING_VALUE) for k, v in config.items()):
            raise _Bad("the model op's config is not settings: text keys, plain values only")
        return {"op": kind, "path": str(inside(root, record["path"], folder=False)), "config": config}
    if kind == "prune":
        names = record["names"]
        if not all(isinstance(n, str) and PRUNABLE.match(n) for n in names):
            raise _Bad("the prune op names something other than epoch_N.ckpt checkpoints")
        local = None if record["path"] is None else str(inside_folder(root, record["path"]))
        return {
            "op": kind,
            "names": names,
            "artifact_path": destination(record["artifact_path"]),
            "path": local,
        }
    dest = record["artifact_path"]
    return {
        "op": kind,
        "path": str(inside(root, record["path"], folder=kind == "artifacts")),  # release: the file too
        "artifact_path": None if dest is None else destination(dest),
    }


def destination(text: str) -> str:
    """An artifact destination: a relative path within the run's artifacts."""
    pure = PurePosixPath(text)
    if not text or pure.is_absolute() or ".." in pure.parts or "\\" in text or "\x00" in text:
        raise _Bad(f"the artifact destination {shown(text)} leaves the run's artifacts")
    return text


def inside(root: Path, text: str, *, folder: bool) -> Path:
    """The resolved path a record names: relative to the run folder `root` (or absolute, in records of
    older versions), no `..`, inside `root` once symlinks are resolved, an existing regular file (or a
    folder whose every entry is one of those, with no symlinked folder)."""
    given = Path(text)
    if not text or "\x00" in text or ".." in given.parts:
        raise _Bad(f"the path {shown(text)} is refused (empty, or with ..)")
    path = (given if given.is_absolute() else root / given).resolve()
    if not path.is_relative_to(root):
        via = f" (through a symlink: {shown(str(path))})" if path != given else ""
        raise _Bad(f"the path {shown(text)} lies outside the run folder {root}{via}")
    if folder and not path.is_dir():
        raise _Bad(f"the folder {shown(text)} does not exist in the run folder")
    if not folder and not path.is_file():
        raise _Bad(f"the file {shown(text)} does not exist in the run folder, or is not a regular file")
    if folder:
        for dirpath, dirnames, filenames in os.walk(path):  # symlinked folders are listed, not entered
            for name in dirnames:
                if (Path(dirpath) / name).is_symlink():
                    raise _Bad(f"the folder {shown(text)} holds a symlinked folder {shown(name)}")
            for name in filenames:
                target = (Path(dirpath) / name).resolve()
                if not target.is_relative_to(root):
                    raise _Bad(f"{shown(name)} in the folder {shown(text)} leads outside the run folder")
                if not target.is_file():
                    raise _Bad(f"{shown(name)} in the folder {shown(text)} is not a regular file")
    return path


def inside_folder(root: Path, text: str) -> Path:
    """A folder a prune op removes copies from: inside the run folder `root` (it may be gone already)."""
    given = Path(text)
    if not text or "\x00" in text or ".." in given.parts or given.is_absolute():
        raise _Bad(f"the path {shown(text)} is refused (empty, absolute, or with ..)")
    path = (root / given).resolve()
    if not path.is_relative_to(root):
        raise _Bad(f"the folder {shown(text)} lies outside the run folder {root}")
    return path
