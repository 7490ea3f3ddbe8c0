"""Where the weights a user names come from: a checkpoint file, a `runs:/` URI, a train run id, or a
registered model (`models:/<name>/<version>`, `models:/<name>@<alias>`), resolved to a local file:
a run's checkpoint in a local artifact store is read where it lies (never written; no second copy
under outputs/downloads), one in a remote store is downloaded. The factory then reads it. Kept apart from the
factory so that building and reading models never imports MLflow."""

from __future__ import annotations

from pathlib import Path

from seqtrack_mlflow.messages import first_line
from seqtrack_mlflow.tracking import (
    RUN_ID,
    download,
    download_registered_checkpoint,
    is_model_uri,
    list_artifact_names,
    require_store_for,
    split_runs_uri,
    store_uri,
    stored_file,
)
from seqtrack_mlflow.train.checkpoints import CHECKPOINT_DIR, CheckpointError, latest_epoch_file


def resolve_checkpoint(target: str, download_dir: Path) -> tuple[Path, str | None]:
    """A local path, `runs:/<id>/<path>` URI, a train run id, or a registered model's `models:/` URI
    -> (local file, run id if known: a registered version's source run)."""
    path = Path(target).expanduser()
    if path.is_file():
        return path, None
    if is_model_uri(target):
        return download_registered_checkpoint(target, download_dir / "models")
    if target.startswith("runs:/"):
        require_store_for(f"checkpoint {target}")
        run_id, artifact = split_runs_uri(target)
        return _stored_or_downloaded(run_id, artifact, download_dir, target), run_id
    if RUN_ID.match(target):
        require_store_for(f"checkpoint {target}")
        try:
            names = list_artifact_names(target, CHECKPOINT_DIR)
        except Exception as exc:  # noqa: BLE001 - any store error means "no such run here"
            raise CheckpointError(
                _not_found(target, f"no run {target} in the tracking store {store_uri()}")
            ) from exc
        latest = latest_epoch_file(names)
        if latest is None:
            raise CheckpointError(_not_found(target, f"run {target} has no {CHECKPOINT_DIR}/epoch_N.ckpt"))
        return _stored_or_downloaded(target, latest, download_dir, target), target
    raise CheckpointError(_not_found(target, "no such file, runs:/ URI, run id or models:/ URI"))


def resolve_pretrained(spec: str, download_dir: Path) -> Path | None:
    """A `pretrained` setting that names a checkpoint in the tracking store (`runs:/` or `models:/`)
    -> the local file it names; None for every other form (a file, a timm name, none), which the
    factory reads itself."""
    if not spec.startswith(("runs:/", "models:/")):
        return None
    return resolve_checkpoint(spec, download_dir)[0]


def checkpoint_uri(run_id: str, name: str) -> str:
    return f"runs:/{run_id}/{CHECKPOINT_DIR}/{name}"


def resolved_reference(target: str, path: Path, run_id: str | None) -> str:
    """The one form of the checkpoint `target` resolved to `path` (from run `run_id`), logged beside
    the `checkpoint` the user gave so that a bare train run id and its `runs:/` URI compare equal:
    `runs:/<run_id>/checkpoints/epoch_N.ckpt`, a `models:/` URI as given, or a file's absolute path."""
    if is_model_uri(target) or target.startswith("runs:/"):
        return target
    if run_id:
        return checkpoint_uri(run_id, path.name)
    return str(path.expanduser().resolve())


def _stored_or_downloaded(run_id: str, artifact: str, download_dir: Path, target: str) -> Path:
    """The file in a local artifact store (read in place), else a download into `download_dir`."""
    stored = stored_file(run_id, artifact)
    if stored is not None:
        return stored
    return _download_checkpoint(f"runs:/{run_id}/{artifact}", download_dir, target)


def _download_checkpoint(uri: str, download_dir: Path, target: str) -> Path:
    try:
        return download(uri, download_dir)
    except Exception as exc:  # noqa: BLE001 - MLflow raises several types for a missing artifact
        why = f"{first_line(exc)}; tracking store {store_uri()}"
        raise CheckpointError(_not_found(target, why)) from exc


def _not_found(target: str, why: str) -> str:
    return (
        f"checkpoint {target!r} not found ({why}): give a checkpoint file, "
        "runs:/<run_id>/checkpoints/epoch_N.ckpt, the id of a train run, or a registered model "
        "models:/<name>/<version> (or models:/<name>@<alias>)"
    )
