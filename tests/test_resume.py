"""Exact resume: 2 epochs + resume to 4 equals 4 uninterrupted epochs, in the same MLflow run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.config import DataConfig, build_settings
from seqtrack_mlflow.steps.train import run_train
from seqtrack_mlflow.train.checkpoints import CheckpointError

pytestmark = pytest.mark.slow


def small_settings(epochs: int):
    data = DataConfig(source="synthetic", synthetic_sequences=4, synthetic_frames=30)
    model = {"search_size": 32, "template_size": 32}
    train = {
        "epochs": epochs,
        "samples_per_epoch": 20,
        "batch_size": 10,
        "seed": 8,
        "system_metrics": False,
        "log_every": 10,
        "device": "cpu",
    }
    return build_settings("tiny", model, train, data)


def test_resume_from_run_id_matches_uninterrupted_run(tmp_path: Path, mlflow_uri: str) -> None:
    full = run_train(small_settings(4), output_dir=tmp_path / "full")
    first = run_train(small_settings(2), output_dir=tmp_path / "part")
    resumed = run_train(
        small_settings(4), resume=first.run_id, given={"epochs": 4}, output_dir=tmp_path / "part"
    )

    assert resumed.run_id == first.run_id  # the same MLflow run goes on
    a = torch.load(full.outcome.checkpoint, weights_only=True)["model_state_dict"]
    b = torch.load(resumed.outcome.checkpoint, weights_only=True)["model_state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"

    client = MlflowClient()
    names = sorted(f.path for f in client.list_artifacts(first.run_id, "checkpoints"))
    assert names == [f"checkpoints/epoch_{i}.ckpt" for i in range(1, 5)]
    steps = [m.step for m in client.get_metric_history(first.run_id, "loss")]
    assert steps == [10, 20, 30, 40, 50, 60, 70, 80]
    log = (resumed.out_dir / "training_log.txt").read_text()
    assert log.count("Epoch 1 : 20 / 20") == 1 and log.count("Epoch 4 : 20 / 20") == 1


def test_resume_from_checkpoint_file_starts_a_new_run(tmp_path: Path, mlflow_uri: str) -> None:
    first = run_train(small_settings(1), output_dir=tmp_path)
    resumed = run_train(
        small_settings(2), resume=str(first.outcome.checkpoint), given={"epochs": 2}, output_dir=tmp_path
    )
    assert resumed.run_id != first.run_id
    assert torch.load(resumed.outcome.checkpoint, weights_only=True)["epoch"] == 2
    tags = MlflowClient().get_run(resumed.run_id).data.tags
    assert tags["seqtrack.resumed_from"] == str(first.outcome.checkpoint)


def test_missing_resume_target_fails_before_any_work(tmp_path: Path, mlflow_uri: str) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        run_train(
            dataclasses.replace(small_settings(1)),
            resume="runs:/" + "a" * 32 + "/checkpoints/epoch_1.ckpt",
            output_dir=tmp_path,
        )
    assert not (tmp_path / "outputs").exists()
    assert MlflowClient().search_runs(experiment_ids=["0"]) == []
