"""Two CPU processes under torchrun (gloo): one MLflow run, one set of artifacts, correct counts."""

from __future__ import annotations

from pathlib import Path

import torch
from mlflow.tracking import MlflowClient
from services import torchrun

from seqtrack_mlflow.tracking import stored_file


def test_torchrun_two_processes(tmp_path: Path, mlflow_uri: str) -> None:
    out = tmp_path / "outputs"
    proc = torchrun(
        2, 29517, "train", "--seed", "8", "--source", "synthetic", "--device", "cpu", "--search_size", "32",
        "--template_size", "32", "--epochs", "1", "--samples_per_epoch", "40", "--batch_size", "5",
        "--log_every", "10", "--system_metrics", "false", "--synthetic_frames", "30",
        "--output_dir", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]

    runs = MlflowClient().search_runs(experiment_ids=["0"])
    assert len(runs) == 1  # only rank 0 talks to MLflow
    run = runs[0]
    assert run.data.tags["seqtrack.world_size"] == "2"
    assert [p.name for p in out.iterdir()] == [run.info.run_id]  # one output folder, no rank copies
    names = [f.path for f in MlflowClient().list_artifacts(run.info.run_id, "checkpoints")]
    assert names == ["checkpoints/epoch_1.ckpt"]

    log = (out / run.info.run_id / "training_log.txt").read_text().splitlines()
    reports = [line for line in log if line.startswith("Epoch 1 : ")]
    # 2 ranks x batch 5 = 10 samples per step: the report counts samples of both ranks.
    assert reports == [f"Epoch 1 : {n} / 40" for n in (10, 20, 30, 40)]
    steps = [m.step for m in MlflowClient().get_metric_history(run.info.run_id, "loss")]
    assert steps == [10, 20, 30, 40]
    assert not (out / run.info.run_id / "checkpoints" / "epoch_1.ckpt").exists()  # the local store holds it
    ckpt = torch.load(stored_file(run.info.run_id, "checkpoints/epoch_1.ckpt"), weights_only=True)
    assert not any(k.startswith("module.") for k in ckpt["model_state_dict"])  # unwrapped from DDP


def test_uneven_shares_are_refused_before_any_work(tmp_path: Path, mlflow_uri: str) -> None:
    proc = torchrun(
        2, 29518, "train", "--source", "synthetic", "--device", "cpu", "--epochs", "1",
        "--samples_per_epoch", "41", "--system_metrics", "false", "--output_dir", str(tmp_path / "o"),
    )  # fmt: skip
    assert proc.returncode != 0
    assert "samples_per_epoch=41 is not divisible by the 2 processes" in proc.stderr
    assert not (tmp_path / "o").exists() and MlflowClient().search_runs(experiment_ids=["0"]) == []
