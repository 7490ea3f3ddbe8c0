"""Checkpoint integrity, with the faults injected for real: a real checkpoint of a real (tiny) model is
damaged on disk (flipped bytes in its tensor data, truncated, emptied), replaced by foreign files (wrong
keys, text, a pickle whose `__reduce__` would create a marker file), and handed to the real CLI:
`evaluate --checkpoint FILE` and `train --resume FILE`. Each is refused with one `error:` line naming
the file and the fault, exit status 2, no traceback, never torch's `weights_only=False` advice, and
nothing written (no output folder, no MLflow run). A full disk during a checkpoint write (a real
ENOSPC, from a tiny tmpfs or /dev/full) is one line too, and leaves the previous checkpoint intact."""

from __future__ import annotations

import errno
import os
import pickle
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from seqtrack_mlflow import fileio
from seqtrack_mlflow.cli import main
from seqtrack_mlflow.config import DataConfig, build_settings
from seqtrack_mlflow.model.factory import build_model
from seqtrack_mlflow.train import checkpoints
from seqtrack_mlflow.train.checkpoints import Checkpoint, CheckpointError, CheckpointWriteError


class Payload:
    """What an attacker pickles: unpickling it would run `touch MARKER`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def tiny_checkpoint(epoch: int = 1) -> Checkpoint:
    data = DataConfig(source="synthetic", classes="airplane,bird", synthetic_sequences=2, synthetic_frames=12)
    settings = build_settings("tiny", {"search_size": 64, "template_size": 64}, {"seed": 3}, data)
    torch.manual_seed(0)
    model = build_model(settings.model)
    return Checkpoint(
        epoch=epoch,
        settings=settings,
        model_state_dict=model.state_dict(),
        optimizer_state_dict={},
        scheduler_state_dict={},
        loss=1.0,
        iou=0.0,
        dataset_info={"source": "synthetic", "classes": ["airplane", "bird"]},
        rng_state=checkpoints.rng_state(),
        mlflow_run_id="b" * 32,
    )


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = checkpoints.save(tiny_checkpoint(), tmp_path_factory.mktemp("good") / "epoch_1.ckpt")
    return path.read_bytes()


def flip_middle(data: bytes, count: int = 4) -> bytes:
    damaged = bytearray(data)
    mid = len(damaged) // 2
    damaged[mid : mid + count] = bytes(b ^ 0xFF for b in damaged[mid : mid + count])
    return bytes(damaged)


def _record_at(path: Path, offset: int) -> str:
    """The zip member whose stored bytes hold `offset` (torch stores the records uncompressed)."""
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
            if start <= offset < start + info.compress_size:
                return info.filename
    return ""


def write_fault(kind: str, good: bytes, folder: Path, marker: Path) -> tuple[Path, str]:
    """A damaged or foreign file at folder/epoch_1.ckpt, and what its refusal must say."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "epoch_1.ckpt"
    if kind == "flipped":
        path.write_bytes(flip_middle(good))
        return path, "do not match the SHA-256 digest"
    if kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
        return path, "not a PyTorch zip archive"
    if kind == "empty":
        path.write_bytes(b"")
        return path, "is empty"
    if kind == "text":
        path.write_text("epoch: 1\nweights: see attached\n")
        return path, "not a PyTorch zip archive"
    if kind == "pickle":  # a plain pickle with a __reduce__ payload
        path.write_bytes(pickle.dumps(Payload(marker)))
        return path, "not a PyTorch zip archive"
    if kind == "torch_pickle":  # the same payload inside a torch zip archive
        torch.save({"epoch": 1, "config": {}, "model_state_dict": Payload(marker)}, path)
        return path, "refused: it holds a reference to posix.system"
    if kind == "wrong_keys":
        torch.save({"state_dict": {"w": torch.ones(3)}, "epoch": 1}, path)
        return path, "not a training checkpoint (no config, model_state_dict)"
    raise AssertionError(kind)


FAULTS = ["flipped", "truncated", "empty", "text", "pickle", "torch_pickle", "wrong_keys"]


def all_runs() -> list:
    client = MlflowClient()
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiment_ids=ids) if ids else []


def assert_refused_in_one_line(code: int, stderr: str, stdout: str, path: Path, message: str) -> None:
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert code == 2, (code, stdout, stderr)
    assert len(errors) == 1, stderr
    assert str(path) in errors[0] and message in errors[0], errors[0]
    for text in (stdout, stderr):
        assert "Traceback" not in text and "weights_only=False" not in text and "weights_only" not in text


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


def _cli_args(command: str, path: Path, out: Path) -> list[str]:
    if command == "evaluate":
        return ["evaluate", "--checkpoint", str(path), "--device", "cpu", "--output_dir", str(out)]
    return [
        "train",
        "--resume",
        str(path),
        "--source",
        "synthetic",
        "--device",
        "cpu",
        "--system_metrics",
        "false",
        "--output_dir",
        str(out),
    ]


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
    result = CliRunner().invoke(main, _cli_args(command, path, out))
    assert isinstance(result.exception, SystemExit), result.exception
    assert_refused_in_one_line(result.exit_code, result.stderr, result.stdout, path, message)
    assert not marker.exists()
    assert not out.exists() and not (tmp_path / "mlruns").exists()
    assert all_runs() == []


@pytest.mark.slow
@pytest.mark.parametrize(("command", "kind"), [("evaluate", "flipped"), ("train", "torch_pickle")])
def test_cli_refuses_in_a_real_process(
    command: str, kind: str, good_bytes: bytes, tmp_path: Path, mlflow_uri: str
) -> None:
    marker = tmp_path / "MARKER"
    path, message = write_fault(kind, good_bytes, tmp_path / "given", marker)
    out = tmp_path / "outputs"
    proc = subprocess.run(
        [sys.executable, "-m", "seqtrack_mlflow.cli", *_cli_args(command, path, out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_refused_in_one_line(proc.returncode, proc.stderr, proc.stdout, path, message)
    assert not marker.exists() and not out.exists() and all_runs() == []


# -- a full disk during a checkpoint write -----------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs (needs root and mount rights; skipped otherwise)."""
    where = tmp_path / "disk"
    where.mkdir()
    if not _mount_tmpfs(where, 1 << 20):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _mount_tmpfs(where: Path, size: int) -> bool:
    if os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    return done.returncode == 0


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


@pytest.mark.slow
def test_train_on_a_full_disk_ends_in_one_line_and_keeps_epoch_1(
    tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real training run whose output folder is a tmpfs with room for one checkpoint, not two."""
    model = build_model(tiny_checkpoint().settings.model)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _mount_tmpfs(disk, int(params * 3 * 1.5)):  # weights + 2 AdamW moments: ~1.5 checkpoints
        pytest.skip("cannot mount a tmpfs here (needs root)")
    monkeypatch.chdir(tmp_path)
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "seqtrack_mlflow.cli",
                "train",
                "--source",
                "synthetic",
                "--synthetic_sequences",
                "4",
                "--synthetic_frames",
                "30",
                "--search_size",
                "64",
                "--template_size",
                "64",
                "--epochs",
                "3",
                "--samples_per_epoch",
                "4",
                "--batch_size",
                "4",
                "--device",
                "cpu",
                "--system_metrics",
                "false",
                "--output_dir",
                str(disk),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=400,
        )
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert proc.returncode == 2, proc.stderr
        assert len(errors) == 1 and "no space left" in errors[0] and "free space" in errors[0], proc.stderr
        assert "Traceback" not in proc.stderr
        (run,) = all_runs()
        assert run.info.status == "FAILED"
        folder = disk / run.info.run_id / "checkpoints"
        assert str(folder) in errors[0]
        assert sorted(p.name for p in folder.iterdir()) == ["epoch_1.ckpt"]  # intact, no temp file
        assert checkpoints.load(folder / "epoch_1.ckpt").epoch == 1  # and it verifies
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
