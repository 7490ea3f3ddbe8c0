"""The checkpoint format, owned here alone: a typed, versioned record, atomic save, `weights_only` load.

A checkpoint holds only tensors and plain Python values, so `torch.load(path, weights_only=True)`
opens it without executing pickled code. Its keys (what the README promises users who open the file
themselves): epoch, model_state_dict, optimizer_state_dict, scheduler_state_dict, loss, iou, seed,
patch_size, dataset_info, timestamp, rng_state, config, mlflow_run_id, elapsed_seconds, history,
global_step, format_version. `seed` and `patch_size` are copies of values in `config`, kept at the top
for users; nothing reads them back.

Versions: 1 = files written before `format_version` existed (they also held `num_tokens` and an empty
`scaler_state_dict`); 2 = this layout. A newer version than this code knows is refused.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqtrack_mlflow.config import TrainSettings

FORMAT_VERSION = 2
CHECKPOINT_DIR = "checkpoints"
_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.ckpt$")


class CheckpointError(ValueError):
    """A resume/evaluate target that cannot be found or read: one line naming it and the fix."""


@dataclass
class Checkpoint:
    """Everything exact resumption and evaluation need after an epoch."""

    epoch: int
    settings: TrainSettings
    model_state_dict: dict[str, torch.Tensor]
    optimizer_state_dict: dict[str, Any]
    scheduler_state_dict: dict[str, Any]
    loss: float
    iou: float
    dataset_info: dict[str, Any]
    rng_state: dict[str, Any]
    mlflow_run_id: str = ""
    elapsed_seconds: float = 0.0
    history: dict[str, list] = field(default_factory=dict)
    timestamp: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    format_version: int = FORMAT_VERSION

    @property
    def global_step(self) -> int:
        return self.epoch * self.settings.train.samples_per_epoch

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "model_state_dict": self.model_state_dict,
            "optimizer_state_dict": self.optimizer_state_dict,
            "scheduler_state_dict": self.scheduler_state_dict,
            "loss": self.loss,
            "iou": self.iou,
            "seed": self.settings.train.seed,
            "patch_size": self.settings.model.patch_size,
            "dataset_info": self.dataset_info,
            "timestamp": self.timestamp,
            "rng_state": self.rng_state,
            "config": self.settings.to_dict(),
            "mlflow_run_id": self.mlflow_run_id,
            "elapsed_seconds": self.elapsed_seconds,
            "history": self.history,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: Path | str = "checkpoint") -> Checkpoint:
        if not isinstance(values, dict):
            raise CheckpointError(f"{source}: not a training checkpoint (holds a {type(values).__name__})")
        version = values.get("format_version", 1)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(
                f"{source}: checkpoint format version {version} is newer than this code reads "
                f"({FORMAT_VERSION}): upgrade seqtrack-mlflow"
            )
        missing = [k for k in ("epoch", "config", "model_state_dict") if k not in values]
        if missing:
            raise CheckpointError(
                f"{source}: not a training checkpoint (no {', '.join(missing)}): "
                "give an epoch_N.ckpt written by training"
            )
        try:
            settings = TrainSettings.from_dict(values["config"])
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"{source}: unusable config in the checkpoint ({exc})") from None
        return cls(
            epoch=int(values["epoch"]),
            settings=settings,
            model_state_dict=values["model_state_dict"],
            optimizer_state_dict=values.get("optimizer_state_dict", {}),
            scheduler_state_dict=values.get("scheduler_state_dict", {}),
            loss=float(values.get("loss", float("nan"))),
            iou=float(values.get("iou", float("nan"))),
            dataset_info=dict(values.get("dataset_info", {})),
            rng_state=values.get("rng_state", {}),
            mlflow_run_id=str(values.get("mlflow_run_id", "")),
            elapsed_seconds=float(values.get("elapsed_seconds", 0.0)),
            history=dict(values.get("history", {})),
            timestamp=str(values.get("timestamp", "")),
            format_version=version,
        )


def checkpoint_name(epoch: int) -> str:
    return f"epoch_{epoch}.ckpt"


def save(ckpt: Checkpoint, path: Path) -> Path:
    """Write `ckpt` atomically (see `write_atomic`)."""
    return write_atomic(ckpt.to_dict(), path)


def write_atomic(values: dict[str, Any], path: Path) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(values, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: Path) -> Checkpoint:
    """Read a training checkpoint with `weights_only=True` (no pickled code runs)."""
    try:
        values = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from exc
    return Checkpoint.from_dict(values, path)


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
