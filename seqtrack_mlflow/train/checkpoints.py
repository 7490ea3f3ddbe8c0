"""The checkpoint format, owned here alone: a typed, versioned record, atomic save, `weights_only` load.

A checkpoint holds only tensors and plain Python values, so `torch.load(path, weights_only=True)`
opens it without executing pickled code. Its keys (what the README promises users who open the file
themselves): epoch, model_state_dict, optimizer_state_dict, scheduler_state_dict, loss, iou, seed,
patch_size, dataset_info, timestamp, rng_state, config, mlflow_run_id, elapsed_seconds, history,
global_step, progress, format_version, digest. `seed` and `patch_size` are copies of values in
`config`, kept at the top for users; nothing reads them back.

`epoch_N.ckpt` holds the state after epoch N. `epoch_N_partial.ckpt` is written when a signal stops
training during epoch N: `epoch` is then N - 1 and `progress` says how far epoch N got (samples done
and its running sums), so a resume continues at that step exactly.

Integrity: `digest` is ``"sha256:<hex>"``, a SHA-256 over the contents of every other key (see
`content_digest`): each tensor's dtype, shape and raw element bytes, and each plain value in a
canonical, typed encoding, in the file's own order. It is computed before the write and stored in the
same pickle, so it lands on disk in the same atomic rename as the data it covers. `load` recomputes it
from what it read and refuses the file when they differ. This catches what torch.load does not: the
bulk of a checkpoint is the tensors' raw storage records, stored uncompressed in the zip, and torch
reads them without checking their CRC-32, so a flipped byte there silently becomes a different weight.
Any change to the tensor bytes, to a plain value, or to the digest itself makes the two differ; damage
to the pickle or the zip structure makes the file unreadable instead. Either way: one line, refused.
The digest covers contents, not file bytes, so a copy re-saved by `torch.save` (same values) still
verifies; a file edited on purpose is out of scope (anyone can recompute an unkeyed digest).

The digest protects against damage (a bad disk, a broken copy), not tampering: it is not a signature.
And before torch reads a byte, `model.torch_file.check_file` checks the zip directory (no compression
bomb, no overlapping members) and data.pkl's opcodes (no nesting that crashes CPython, no memo bomb).

Versions: 1 = files written before `format_version` existed (they also held `num_tokens` and an empty
`scaler_state_dict`); 2 = this layout without a digest; 3 = this layout with `digest` (required).
Versions 1 and 2 still load but cannot be verified: a flipped byte in their tensor data goes unnoticed.
A newer version than this code knows is refused, and so is a version below 1.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import random
import re
import struct
import warnings
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqtrack_mlflow.config import TrainSettings
from seqtrack_mlflow.fileio import atomic_write, is_disk_full
from seqtrack_mlflow.model.torch_file import TorchZipError, check_file

FORMAT_VERSION = 3
DIGEST_KEY = "digest"
_DIGEST_FROM = 3  # the first version whose files must carry a digest
CHECKPOINT_DIR = "checkpoints"
_EPOCH_FILE = re.compile(r"^epoch_(\d+)(_partial)?\.ckpt$")


class CheckpointError(ValueError):
    """A resume/evaluate target that cannot be found or read: one line naming it and the fix."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint that could not be written (disk full, read-only folder): one line, folder and fix."""


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
    progress: dict[str, Any] = field(default_factory=dict)  # of epoch `epoch + 1`; {} = none
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
            "progress": self.progress,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: Path | str = "checkpoint") -> Checkpoint:
        if not isinstance(values, dict):
            raise CheckpointError(f"{source}: not a training checkpoint (holds a {type(values).__name__})")
        version = _check_version(values, source)
        missing = [k for k in ("epoch", "config", "model_state_dict") if k not in values]
        if missing:
            raise CheckpointError(
                f"{source}: not a training checkpoint (no {', '.join(missing)}): "
                "give an epoch_N.ckpt written by training"
            )
        state = values["model_state_dict"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(
                f"{source}: not a training checkpoint (model_state_dict is not a dict of tensors): "
                "give an epoch_N.ckpt written by training"
            )
        try:
            settings = TrainSettings.from_dict(values["config"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"{source}: unusable config in the checkpoint ({exc})") from None
        try:
            return cls(
                epoch=int(values["epoch"]),
                settings=settings,
                model_state_dict=state,
                optimizer_state_dict=dict(values.get("optimizer_state_dict", {})),
                scheduler_state_dict=dict(values.get("scheduler_state_dict", {})),
                loss=float(values.get("loss", float("nan"))),
                iou=float(values.get("iou", float("nan"))),
                dataset_info=dict(values.get("dataset_info", {})),
                rng_state=values.get("rng_state", {}),
                mlflow_run_id=str(values.get("mlflow_run_id", "")),
                elapsed_seconds=float(values.get("elapsed_seconds", 0.0)),
                history=dict(values.get("history", {})),
                progress=dict(values.get("progress", {})),
                timestamp=str(values.get("timestamp", "")),
                format_version=version,
            )
        except (TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{source}: not a training checkpoint (a field of the wrong type: {exc})"
            ) from None


def _check_version(values: dict[str, Any], source: Path | str) -> int:
    version = values.get("format_version", 1)
    if isinstance(version, int) and not isinstance(version, bool) and version < 1:
        raise CheckpointError(
            f"{source}: checkpoint format version {version} does not exist (versions start at 1): "
            "damaged, or not a checkpoint written by training; use another checkpoint"
        )
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{source}: checkpoint format version {version!r} is newer than this code reads "
            f"({FORMAT_VERSION}): upgrade seqtrack-mlflow"
        )
    return version


def checkpoint_name(epoch: int) -> str:
    return f"epoch_{epoch}.ckpt"


def partial_name(epoch: int) -> str:
    """The checkpoint of an epoch stopped part-way by a signal."""
    return f"epoch_{epoch}_partial.ckpt"


def save(ckpt: Checkpoint, path: Path) -> Path:
    """Write `ckpt` with its digest, atomically (see `write_atomic`): data and digest land together."""
    return write_atomic(seal(ckpt.to_dict()), path)


def seal(values: dict[str, Any]) -> dict[str, Any]:
    """`values` plus the digest of their contents under `digest` (a new dict)."""
    return {**values, DIGEST_KEY: content_digest(values)}


def content_digest(values: dict[str, Any]) -> str:
    """SHA-256 over every key but `digest`: tensors as dtype, shape and raw element bytes (hashed in
    place, one tensor at a time), plain values in a typed encoding (so 1, 1.0, True and "1" differ)."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in values.items() if k != DIGEST_KEY})
    return "sha256:" + h.hexdigest()


def _feed(h: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach()
        h.update(f"T{t.dtype}{tuple(t.shape)}|".encode())
        if t.numel():
            flat = t.cpu().contiguous().reshape(-1)
            h.update(memoryview(flat.view(torch.uint8).numpy()))
    elif isinstance(value, dict):
        h.update(b"D%d|" % len(value))
        for k, v in value.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(value, (list, tuple)):
        h.update(b"%s%d|" % (b"L" if isinstance(value, list) else b"U", len(value)))
        for v in value:
            _feed(h, v)
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        h.update(b"S%d|" % len(data) + data)
    elif isinstance(value, bytes):
        h.update(b"B%d|" % len(value) + value)
    elif isinstance(value, bool):
        h.update(b"b1" if value else b"b0")
    elif isinstance(value, int):
        h.update(b"I%d|" % value)
    elif isinstance(value, float):
        h.update(b"F" + struct.pack("<d", value))
    elif value is None:
        h.update(b"N")
    else:  # torch.dtype, torch.device and the like: weights_only-loadable, stable reprs
        text = f"{type(value).__module__}.{type(value).__qualname__}:{value!r}".encode()
        h.update(b"O%d|" % len(text) + text)


def write_atomic(values: dict[str, Any], path: Path) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename: never a half-written file.

    On any failure the temporary file is removed and `path` (a previous checkpoint) is left as it was.
    A full disk or another OS refusal raises `CheckpointWriteError` (one line: the folder and the fix).
    """
    try:
        return atomic_write(path, lambda f: torch.save(values, f), fsync=True)
    except BaseException as exc:
        cause = _os_error_in(exc)
        if cause is not None:
            raise _write_error(path, cause) from exc
        raise


def _os_error_in(exc: BaseException) -> OSError | None:
    """The OSError behind a failed write (torch's zip writer may wrap the file object's error)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, RuntimeError) and any(s in str(exc) for s in ("No space left", "Errno 28")):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return None


def _write_error(path: Path, exc: OSError) -> CheckpointWriteError:
    folder = path.parent
    if is_disk_full(exc):
        return CheckpointWriteError(
            f"no space left on the device holding {folder} while writing checkpoint {path.name} "
            "(earlier checkpoints are intact): free space there, or set -P output_dir to a "
            "folder on a disk with room, then resume from the last checkpoint"
        )
    return CheckpointWriteError(
        f"cannot write checkpoint {path.name} in {folder}: {exc.strerror or exc} "
        "(earlier checkpoints are intact): make the folder writable, or set -P output_dir"
    )


def load(path: Path) -> Checkpoint:
    """Read a training checkpoint with `weights_only=True` (no pickled code runs) and verify it.

    Refused, each with one line naming the file and what is wrong (`CheckpointError`): a missing,
    empty, truncated or non-zip file; a pickle that references anything but tensors and plain values
    (a `__reduce__` payload: refused by the weights-only unpickler before anything runs); a file whose
    contents no longer match its digest (flipped bytes); a dict without a checkpoint's keys. Version 1
    and 2 files carry no digest: they load, but their contents cannot be verified.
    """
    path = Path(path)
    values = _read(path)
    if not isinstance(values, dict):
        raise CheckpointError(
            f"{path}: not a training checkpoint (holds a {type(values).__name__}): "
            "give an epoch_N.ckpt written by training"
        )
    _check_version(values, path)
    try:
        _verify(values, path)
    except RecursionError:  # nesting deepened through the pickle's memo, past the opcode scan's count
        raise CheckpointError(f"checkpoint {path} refused: it nests values too deep to verify") from None
    values = {k: v for k, v in values.items() if k != DIGEST_KEY}
    return Checkpoint.from_dict(values, path)


def _read(path: Path) -> Any:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    if size == 0:
        raise CheckpointError(
            f"checkpoint {path} is empty (0 bytes; an interrupted copy or download?): use another checkpoint"
        )
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"checkpoint {path} is not a PyTorch zip archive ({size} bytes: truncated, or a text file or "
            "plain pickle, not a checkpoint): give an epoch_N.ckpt written by training"
        )
    try:  # the zip directory and data.pkl's opcodes, before torch inflates or unpickles anything
        check_file(path)
    except TorchZipError as exc:
        raise CheckpointError(
            f"checkpoint {path} refused before unpickling: {exc}: damaged, or not a checkpoint "
            "written by training; use another checkpoint"
        ) from None
    except Exception as exc:  # noqa: BLE001 - a damaged zip (CRC, truncated member)
        raise CheckpointError(
            f"checkpoint {path} is damaged and cannot be read ({_reason(exc)}): use another checkpoint"
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol notes are no business of the user
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"a reference to {found.group(1)}" if found else "objects other than tensors and plain values"
        raise CheckpointError(
            f"checkpoint {path} refused: it holds {what}, which no training checkpoint holds (nothing in it "
            "was run): damaged, or not a checkpoint; give an epoch_N.ckpt written by training"
        ) from None
    except Exception as exc:  # noqa: BLE001 - a damaged archive or pickle raises many types
        raise CheckpointError(
            f"checkpoint {path} is damaged and cannot be read ({_reason(exc)}): use another checkpoint"
        ) from None


def _reason(exc: BaseException) -> str:
    """A short, safe description: the first line of the error, never torch's advice about pickles."""
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    first = first.split(". ")[0].rstrip(".")
    if not first or "weights_only" in first:
        return type(exc).__name__
    return f"{type(exc).__name__}: {first[:160]}"


def _verify(values: dict[str, Any], path: Path) -> None:
    version = values.get("format_version", 1)
    stored = values.get(DIGEST_KEY)
    if stored is None:
        if isinstance(version, int) and version >= _DIGEST_FROM:
            raise CheckpointError(
                f"checkpoint {path} is damaged: format version {version} requires a digest and it has "
                "none: use another checkpoint"
            )
        return  # versions 1 and 2: nothing to verify against
    if not isinstance(stored, str) or not stored.startswith("sha256:"):
        raise CheckpointError(
            f"checkpoint {path} is damaged: its digest field is unreadable ({str(stored)[:40]!r}): "
            "use another checkpoint"
        )
    if content_digest(values) != stored:
        raise CheckpointError(
            f"checkpoint {path} is damaged: its contents do not match the SHA-256 digest written with it "
            "(flipped or overwritten bytes): use another checkpoint, or copy or download it again"
        )


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
    """The latest state among epoch_N.ckpt and epoch_N_partial.ckpt names (numeric, so 10 beats 9):
    epoch N part-way comes after epoch N - 1 and before epoch N complete."""
    found = [
        (int(m.group(1)) - (0.5 if m.group(2) else 0.0), n)
        for n in names
        if (m := _EPOCH_FILE.match(Path(n).name))
    ]
    return max(found)[1] if found else None
