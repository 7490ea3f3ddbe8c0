"""Checkpoint faults met by real processes: a damaged or foreign checkpoint handed to the CLI in a process
of its own is refused in one line with nothing written, and a real training run whose output folder is a
tmpfs with room for one checkpoint ends in one line keeping epoch 1 (the in-process versions are in
tests/train/test_checkpoint_integrity.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from factories import all_runs, assert_refused_in_one_line, checkpoint_cli_args, tiny_checkpoint, write_fault
from mlflow.tracking import MlflowClient
from services import mount_tmpfs

from seqtrack_mlflow.model.factory import build_model
from seqtrack_mlflow.train import checkpoints


@pytest.mark.parametrize(("command", "kind"), [("evaluate", "flipped"), ("train", "torch_pickle")])
def test_cli_refuses_in_a_real_process(
    command: str, kind: str, good_bytes: bytes, tmp_path: Path, mlflow_uri: str
) -> None:
    marker = tmp_path / "MARKER"
    path, message = write_fault(kind, good_bytes, tmp_path / "given", marker)
    out = tmp_path / "outputs"
    proc = subprocess.run(
        [sys.executable, "-m", "seqtrack_mlflow.cli", *checkpoint_cli_args(command, path, out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_refused_in_one_line(proc.returncode, proc.stderr, proc.stdout, path, message)
    assert not marker.exists() and not out.exists() and all_runs() == []


def test_train_on_a_full_disk_ends_in_one_line_and_keeps_epoch_1(
    tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real training run whose output folder is a tmpfs with room for one checkpoint, not two. The store
    is a server (a remote artifact store keeps the local copies; a local one would hold the only copy of
    epoch 1 and free its room here)."""
    model = build_model(tiny_checkpoint().settings.model)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    disk = tmp_path / "disk"
    disk.mkdir()
    if not mount_tmpfs(disk, int(params * 3 * 1.5)):  # weights + 2 AdamW moments: ~1.5 checkpoints
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
            env={**os.environ, "MLFLOW_TRACKING_URI": server},
        )
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert proc.returncode == 2, proc.stderr
        assert len(errors) == 1 and "no space left" in errors[0] and "free space" in errors[0], proc.stderr
        assert "Traceback" not in proc.stderr
        (run,) = MlflowClient(server).search_runs(experiment_ids=["0"])
        assert run.info.status == "FAILED"
        folder = disk / run.info.run_id / "checkpoints"
        assert str(folder) in errors[0]
        assert sorted(p.name for p in folder.iterdir()) == ["epoch_1.ckpt"]  # intact, no temp file
        assert checkpoints.load(folder / "epoch_1.ckpt").epoch == 1  # and it verifies
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
