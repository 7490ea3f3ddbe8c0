"""Where a run's artifacts lie when its artifact store is a folder on this machine, and the two changes
training makes there: dropping the local copy of an uploaded checkpoint, and removing checkpoints the
retention rule (`-P keep_checkpoints`) no longer keeps; and the tracker model's copy of the final
checkpoint made a hard link to the run's.

A checkpoint is written to the run's local folder (`outputs/<run>/checkpoints`) and uploaded from there.
With a local artifact store (a plain path or `file:` URI: the default of `sqlite:///mlflow.db` and
`./mlruns` stores) the upload is a second copy on the same machine: once the store holds it, the local
one is removed (`release_local_copy`). A remote store (`http(s)://`, `mlflow-artifacts:`, `s3://`...)
keeps the local copy, as before. A checkpoint not yet uploaded (the store away, an outbox waiting for
`sync`) is never touched: release is queued behind its upload. The logged MLflow model `model` holds
its own copy of the final checkpoint (MLflow copies a model's files into it); in a local store that
copy becomes a hard link to the run's `checkpoints/epoch_N.ckpt` (`link_model_copy`): the same bytes
once on disk, and still the model's file should retention later delete the run's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.messages import first_line
from seqtrack_mlflow.tracking.health import say

PRUNABLE = re.compile(r"^epoch_\d+\.ckpt$")  # complete epochs only: partial checkpoints are never pruned


def artifact_root(client: Any, run_id: str) -> str:
    """The run's artifact URI (a store error propagates)."""
    return str(client.get_run(run_id).info.artifact_uri)


def local_artifact_dir(artifact_uri: str) -> Path | None:
    """The folder of a local artifact store's run artifacts; None for a remote store."""
    try:
        repo = get_artifact_repository(artifact_uri)
    except Exception:  # noqa: BLE001 - a scheme without a repository here: not local
        return None
    return Path(repo.artifact_dir) if isinstance(repo, LocalArtifactRepository) else None


def stored_file(run_id: str, artifact_path: str, client: Any | None = None) -> Path | None:
    """The file inside a local artifact store that holds the run's `artifact_path`, for reading in
    place; None for a remote store, an unknown run or a missing artifact."""
    try:
        folder = local_artifact_dir(artifact_root(client or MlflowClient(), run_id))
    except Exception:  # noqa: BLE001 - no such run here: the caller reports it
        return None
    relative = PurePosixPath(artifact_path)
    if folder is None or relative.is_absolute() or ".." in relative.parts:
        return None  # a runs:/ URI names a file inside the run's artifacts, never one elsewhere
    path = folder / relative
    return path if path.is_file() else None


def release_local_copy(client: Any, run_id: str, path: Path, artifact_path: str) -> bool:
    """Remove `path` once a local artifact store holds its upload (`<artifact_path>/<name>`, same size);
    True when removed. A remote store, or a stored copy that is missing or differs, keeps it."""
    folder = local_artifact_dir(artifact_root(client, run_id))
    if folder is None or not path.is_file():
        return False
    stored = folder / artifact_path / path.name
    try:
        if stored.resolve() == path.resolve() or stored.stat().st_size != path.stat().st_size:
            return False
        path.unlink()
    except OSError:
        return False
    return True


def prune_artifacts(
    client: Any, run_id: str, artifact_path: str, names: Iterable[str], local_dir: Path | None
) -> list[str]:
    """Remove the checkpoints `names` (epoch_N.ckpt only) from the run's `artifact_path` and their local
    copies in `local_dir` (a remote store's run keeps them there); returns those removed from the store.
    A store whose repository cannot delete says so in one warning and keeps them."""
    wanted = {n for n in names if PRUNABLE.match(n)}
    uri = artifact_root(client, run_id)
    present = {PurePosixPath(a.path).name for a in client.list_artifacts(run_id, artifact_path)}
    removed = []
    repo = get_artifact_repository(uri)
    for name in sorted(wanted & present):
        try:
            repo.delete_artifacts(f"{artifact_path}/{name}")
        except Exception as exc:  # noqa: BLE001 - NotImplementedError, or the store's own refusal
            say(f"warning: checkpoint {artifact_path}/{name} of run {run_id} kept: {first_line(exc)}")
            break
        removed.append(name)
    if local_dir is not None:  # only copies the store holds: a checkpoint it refused stays here
        for name in wanted & present:
            (local_dir / name).unlink(missing_ok=True)
    return removed


def link_model_copy(client: Any, run_id: str, model_id: str, name: str, artifact_path: str) -> bool:
    """Make the logged model `model_id`'s file `name` a hard link to the run's `<artifact_path>/<name>`
    when both lie in a local store and hold as many bytes; True when linked. Anything else (a remote
    store, another device, a file that differs) leaves the model's copy as it is."""
    stored = stored_file(run_id, f"{artifact_path}/{name}", client)
    if stored is None:
        return False
    try:  # best effort: the model is logged; a store error here must not send it again
        model_dir = local_artifact_dir(str(client.get_logged_model(model_id).artifact_location))
    except Exception:  # noqa: BLE001 - any store error: the copy stays
        return False
    if model_dir is None:
        return False
    copies = [p for p in model_dir.rglob(name) if p.is_file() and not p.is_symlink()]
    if len(copies) != 1:
        return False
    (copy,) = copies
    tmp = copy.with_name(f".{name}.link")
    try:
        if copy.stat().st_size != stored.stat().st_size or copy.samefile(stored):
            return False
        tmp.unlink(missing_ok=True)
        os.link(stored, tmp)
        os.replace(tmp, copy)  # atomic: the model's file is whole at every moment
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    return True


__all__ = [
    "PRUNABLE",
    "link_model_copy",
    "local_artifact_dir",
    "prune_artifacts",
    "release_local_copy",
    "stored_file",
]
