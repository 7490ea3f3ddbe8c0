"""Epoch checkpoints: atomic writes, `weights_only` loading, and finding a resume target.

A checkpoint holds only tensors and plain Python values, so `torch.load(path, weights_only=True)`
opens it without executing pickled code.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_DIR = "checkpoints"
_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.ckpt$")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


class CheckpointError(ValueError):
    """A resume/evaluate target that cannot be found or read."""


def checkpoint_name(epoch: int) -> str:
    return f"epoch_{epoch}.ckpt"


def save_checkpoint(state: dict[str, Any], path: Path) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}".splitlines()[0]) from exc


def rng_state() -> dict[str, Any]:
    """Every RNG the loop touches, as weights_only-loadable values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": _py_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _py_state_to_plain(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def latest_epoch_file(names: list[str]) -> str | None:
    """The name with the highest N among epoch_N.ckpt names (numeric, so 10 beats 9)."""
    found = [(int(m.group(1)), n) for n in names if (m := _EPOCH_FILE.match(Path(n).name))]
    return max(found)[1] if found else None


def resolve_checkpoint(target: str, download_dir: Path) -> tuple[Path, str | None]:
    """A local path, `runs:/<id>/<path>` URI, or a train run id -> (local file, run id if known)."""
    path = Path(target).expanduser()
    if path.is_file():
        return path, None
    if target.startswith("runs:/"):
        run_id = target[len("runs:/") :].split("/", 1)[0]
        return _download(target, download_dir, target), run_id
    if _RUN_ID.match(target):
        from mlflow.tracking import MlflowClient

        try:
            names = [a.path for a in MlflowClient().list_artifacts(target, CHECKPOINT_DIR)]
        except Exception as exc:  # noqa: BLE001 - any store error means "no such run here"
            raise CheckpointError(_not_found(target, f"no run {target} in this tracking store")) from exc
        latest = latest_epoch_file(names)
        if latest is None:
            raise CheckpointError(_not_found(target, f"run {target} has no {CHECKPOINT_DIR}/epoch_N.ckpt"))
        return _download(f"runs:/{target}/{latest}", download_dir, target), target
    raise CheckpointError(_not_found(target, "no such file, runs:/ URI or run id"))


def _download(uri: str, download_dir: Path, target: str) -> Path:
    import mlflow

    download_dir.mkdir(parents=True, exist_ok=True)
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(download_dir)))
    except Exception as exc:  # noqa: BLE001 - MLflow raises several types for a missing artifact
        raise CheckpointError(_not_found(target, str(exc).splitlines()[0])) from exc


def _not_found(target: str, why: str) -> str:
    return (
        f"checkpoint {target!r} not found ({why}): give a checkpoint file, "
        "runs:/<run_id>/checkpoints/epoch_N.ckpt, or the id of a train run"
    )
