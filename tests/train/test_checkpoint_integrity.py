"""Checkpoint integrity, with the faults injected for real: a real checkpoint of a real (tiny) model is
damaged on disk (flipped bytes in its tensor data, truncated, emptied), replaced by foreign files (wrong
keys, text, a pickle whose `__reduce__` would create a marker file), and handed to the real CLI:
`evaluate --checkpoint FILE` and `train --resume FILE`. Each is refused with one `error:` line naming
the file and the fault, exit status 2, no traceback, never torch's `weights_only=False` advice, and
nothing written (no output folder, no MLflow run). A full disk during a checkpoint write (a real
ENOSPC, from a tiny tmpfs or /dev/full) is one line too, and leaves the previous checkpoint intact.
In a process of its own, and a whole training run on a full disk: tests/e2e/test_checkpoint_faults.py."""

from __future__ import annotations

import errno
import os
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from factories import (
    FAULTS,
    all_runs,
    assert_refused_in_one_line,
    checkpoint_cli_args,
    flip_middle,
    tiny_checkpoint,
    write_fault,
)
from services import mount_tmpfs

from seqtrack_mlflow import fileio
from seqtrack_mlflow.cli import main
from seqtrack_mlflow.train import checkpoints
from seqtrack_mlflow.train.checkpoints import CheckpointError, CheckpointWriteError


def _record_at(path: Path, offset: int) -> str:
    """The zip member whose stored bytes hold `offset` (torch stores the records uncompressed)."""
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
            if start <= offset < start + info.compress_size:
                return info.filename
    return ""


# -- the digest itself -------------------------------------------------------------------------------


def test_every_checkpoint_carries_a_digest_and_stays_weights_only_loadable(tmp_path: Path) -> None:
    path = checkpoints.save(tiny_checkpoint(), tmp_path / "epoch_1.ckpt")
    raw = torch.load(path, weights_only=True)  # what a user does with the file
    assert raw["format_version"] == checkpoints.FORMAT_VERSION == 3
    assert raw["digest"].startswith("sha256:") and raw["digest"] == checkpoints.content_digest(raw)
    assert {"epoch", "model_state_dict", "config", "rng_state"} <= raw.keys()
    assert checkpoints.load(path).epoch == 1  # verifies
    assert [p.name for p in tmp_path.iterdir()] == ["epoch_1.ckpt"]  # digest and data: one atomic file


def test_flipped_tensor_bytes_load_silently_in_torch_but_are_refused(
    good_bytes: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "epoch_1.ckpt"
    path.write_bytes(good_bytes)
    assert "/data/" in _record_at(path, len(good_bytes) // 2)  # the middle is raw tensor storage
    path.write_bytes(flip_middle(good_bytes))
    raw = torch.load(path, weights_only=True)  # torch does not notice: the weights just changed
    good = checkpoints.load(_copy(good_bytes, tmp_path / "good.ckpt")).model_state_dict
    assert any(not torch.equal(good[k], raw["model_state_dict"][k]) for k in good)
    with pytest.raises(CheckpointError, match="do not match the SHA-256 digest") as err:
        checkpoints.load(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def _copy(data: bytes, path: Path) -> Path:
    path.write_bytes(data)
    return path


def test_every_tensor_record_is_covered(good_bytes: bytes, tmp_path: Path) -> None:
    """A flip in any tensor record, or in a plain value, or in the digest, is caught."""
    src = _copy(good_bytes, tmp_path / "src.ckpt")
    with zipfile.ZipFile(src) as zf:
        records = [i for i in zf.infolist() if "/data/" in i.filename and i.compress_size]
    assert len(records) > 10
    for info in records[:: max(1, len(records) // 12)]:
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        damaged = bytearray(good_bytes)
        damaged[start + info.compress_size // 2] ^= 0x01  # one bit
        path = _copy(bytes(damaged), tmp_path / "bit.ckpt")
        with pytest.raises(CheckpointError, match="digest"):
            checkpoints.load(path)

    raw = torch.load(src, weights_only=True)
    for change in ({"loss": 0.5}, {"epoch": 2}, {"digest": "sha256:" + "0" * 64}):
        path = checkpoints.write_atomic({**raw, **change}, tmp_path / "edited.ckpt")
        with pytest.raises(CheckpointError, match="do not match"):
            checkpoints.load(path)
    unsealed = {k: v for k, v in raw.items() if k != "digest"}  # a version-3 file must carry one
    with pytest.raises(CheckpointError, match="requires a digest"):
        checkpoints.load(checkpoints.write_atomic(unsealed, tmp_path / "unsealed.ckpt"))
    version_2 = {**unsealed, "format_version": 2}  # written before digests: loads, unverified
    assert checkpoints.load(checkpoints.write_atomic(version_2, tmp_path / "v2.ckpt")).format_version == 2


def test_digest_is_typed_and_ordered() -> None:
    base = {"a": 1, "b": torch.arange(3)}
    digests = {
        checkpoints.content_digest(v)
        for v in (
            base,
            {"a": 1.0, "b": torch.arange(3)},
            {"a": True, "b": torch.arange(3)},
            {"a": "1", "b": torch.arange(3)},
            {"a": 1, "b": torch.arange(3).float()},
            {"a": 1, "b": torch.arange(3).reshape(3, 1)},
            {"a": [1], "b": torch.arange(3)},
            {"a": (1,), "b": torch.arange(3)},
        )
    }
    assert len(digests) == 8
    assert checkpoints.content_digest({**base, "digest": "x"}) == checkpoints.content_digest(base)
    assert checkpoints.content_digest({"t": torch.ones(2, 3).t()}) == checkpoints.content_digest(
        {"t": torch.ones(3, 2)}
    )  # logical contents, not memory layout


@pytest.mark.parametrize("kind", FAULTS)
def test_damaged_and_foreign_files_are_refused_by_load(kind: str, good_bytes: bytes, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    path, message = write_fault(kind, good_bytes, tmp_path / "ckpt", marker)
    with pytest.raises(CheckpointError) as err:
        checkpoints.load(path)
    text = str(err.value)
    assert "\n" not in text and str(path) in text and message in text, text
    assert "weights_only" not in text
    assert not marker.exists()  # the payload never ran


# -- the real CLI ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["evaluate", "train"])
@pytest.mark.parametrize("kind", FAULTS)
def test_cli_refuses_in_one_line_and_writes_nothing(
    kind: str,
    command: str,
    good_bytes: bytes,
    tmp_path: Path,
    mlflow_uri: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "MARKER"
    path, message = write_fault(kind, good_bytes, tmp_path / "given", marker)
    out = tmp_path / "outputs"
    result = CliRunner().invoke(main, checkpoint_cli_args(command, path, out))
    assert isinstance(result.exception, SystemExit), result.exception
    assert_refused_in_one_line(result.exit_code, result.stderr, result.stdout, path, message)
    assert not marker.exists()
    assert not out.exists() and not (tmp_path / "mlruns").exists()
    assert all_runs() == []


# -- a full disk during a checkpoint write -----------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs (needs root and mount rights; skipped otherwise)."""
    where = tmp_path / "disk"
    where.mkdir()
    if not mount_tmpfs(where, 1 << 20):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_disk_full_on_a_real_tmpfs_keeps_the_previous_checkpoint(small_disk: Path) -> None:
    target = small_disk / "checkpoints" / "epoch_1.ckpt"
    checkpoints.write_atomic(checkpoints.seal({"epoch": 1, "w": torch.ones(1000)}), target)
    before = target.read_bytes()
    with pytest.raises(CheckpointWriteError) as err:
        checkpoints.write_atomic({"epoch": 2, "w": torch.ones(1 << 20)}, target)  # 4 MiB > 1 MiB
    text = str(err.value)
    assert "\n" not in text and str(target.parent) in text and "free space" in text
    assert isinstance(err.value.__cause__, RuntimeError | OSError)
    assert target.read_bytes() == before  # the previous checkpoint is intact
    assert [p.name for p in target.parent.iterdir()] == ["epoch_1.ckpt"]  # no temp file left


def test_disk_full_from_dev_full_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without mount rights: the temporary file is real (in the target folder, so the rename would be
    atomic), but its descriptor is /dev/full, whose every write fails with a real ENOSPC."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    target = tmp_path / "checkpoints" / "epoch_1.ckpt"
    checkpoints.write_atomic({"epoch": 1, "w": torch.ones(10)}, target)
    before = target.read_bytes()
    real_open = open

    def temporary_file_on_dev_full(file, mode="r", *args, **kwargs):
        # The temporary checkpoint is created where the writer asked, but its bytes go to /dev/full.
        real_open(file, mode, *args, **kwargs).close()
        return real_open("/dev/full", "wb")

    monkeypatch.setattr(fileio, "open", temporary_file_on_dev_full, raising=False)
    with pytest.raises(CheckpointWriteError, match="no space left") as err:
        checkpoints.write_atomic({"epoch": 2, "w": torch.ones(1 << 16)}, target)
    assert str(target.parent) in str(err.value) and "free space" in str(err.value)
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["epoch_1.ckpt"]


def test_other_write_refusals_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "checkpoints" / "epoch_1.ckpt"

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(target.parent))

    monkeypatch.setattr(fileio, "open", refuse, raising=False)
    with pytest.raises(CheckpointWriteError, match="Read-only file system") as err:
        checkpoints.write_atomic({"epoch": 1}, target)
    assert str(target.parent) in str(err.value)
