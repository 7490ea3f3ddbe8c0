"""`mlflow run . -e train` end to end: params, metric histories, log lines, checkpoints, summary."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import pytest
import torch
from factories import FAST_TRAIN
from mlflow.tracking import MlflowClient
from services import download_artifact, mlflow_run

from seqtrack_mlflow.config import step_settings


@pytest.fixture(scope="module")
def train_run(tmp_path_factory: pytest.TempPathFactory, _migrated_db: Path):
    import shutil

    tmp = tmp_path_factory.mktemp("train-e2e")
    shutil.copy(_migrated_db, tmp / "mlflow.db")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "SEQTRACK_CACHE": str(tmp / "cache")}
    params = {**FAST_TRAIN, "output_dir": str(tmp / "outputs"), "lr": "1e-4"}
    proc = mlflow_run("train", params, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = MlflowClient().search_runs(experiment_ids=["0"])
    assert len(runs) == 1
    yield runs[0], tmp, proc
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_params_every_setting_without_clash(train_run) -> None:
    run, _, _ = train_run
    p = run.data.params
    assert p["seed"] == "8" and p["patch_size"] == "16" and p["lr"] == "1e-4"  # mlflow run's own strings
    assert p["epochs"] == "2" and p["preset"] == "tiny" and p["num_tokens"] == str(16 + 2 * 16)
    assert p["batch_size"] == "10" and p["search_size"] == "64"
    for key in ("encoder_dim", "center_jitter", "scale_jitter", "max_interval", "weight_decay", "bins"):
        assert key in p, key
    for s in step_settings("train"):  # every setting of the entry point, with the value used
        assert s.name in p, s.name
    assert p["log_every"] == "50" and p["device"] == "auto" and p["resume"] == "none" and p["data"] == "none"
    assert p["cache_dir"].endswith("cache")  # the folder actually used, not a placeholder
    assert not any(k.startswith(("effective.", "resumed.")) for k in p)
    assert run.data.tags["data.source"] == "synthetic" and run.info.status == "FINISHED"


def test_metric_histories_and_steps(train_run) -> None:
    run, _, _ = train_run
    client = MlflowClient()
    loss = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in loss] == [50, 100, 150, 200]
    for name in ("iou", "time_last_50_samples_s", "time_since_start_s", "epoch_eta_s", "samples_per_s"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [50, 100, 150, 200], name
    epoch_loss = client.get_metric_history(run.info.run_id, "epoch_loss")
    assert [m.step for m in epoch_loss] == [100, 200]
    assert [m.value for m in client.get_metric_history(run.info.run_id, "lr")] == [1e-4, 1e-4]
    # tiny trains the encoder at the base rate (encoder_lr_mult 1.0)
    assert [m.value for m in client.get_metric_history(run.info.run_id, "lr_encoder")] == [1e-4, 1e-4]


def test_training_log_lines(train_run, tmp_path: Path) -> None:
    run, _, proc = train_run
    path = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="training_log.txt", dst_path=str(tmp_path)
    )
    lines = Path(path).read_text().splitlines()
    assert lines[0] == "Epoch 1 : 50 / 100"
    assert lines[1].startswith("time for last 50 samples : 0:00:") and lines[1].endswith(" hours")
    assert lines[2].startswith("time since beginning : ") and lines[3].startswith(
        "time left to finish epoch : "
    )
    assert lines[4].startswith("loss : ") and lines[5].startswith("IoU : ")
    assert sum(line.startswith("Epoch 2 : ") for line in lines) == 2
    assert "Epoch 1 : 100 / 100" in proc.stdout  # the console shows the same report


def test_checkpoints_download_with_cli_and_load_weights_only(train_run, tmp_path: Path) -> None:
    run, tmp, _ = train_run
    for epoch in (1, 2):
        # The module's store (each test's own isolated store is empty).
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        path = download_artifact(run.info.run_id, f"checkpoints/epoch_{epoch}.ckpt", tmp_path, uri)
        ckpt = torch.load(path, weights_only=True)
        assert ckpt["epoch"] == epoch and ckpt["seed"] == 8 and ckpt["patch_size"] == 16
        assert ckpt["mlflow_run_id"] == run.info.run_id
        for key in (
            "model_state_dict",
            "optimizer_state_dict",
            "scheduler_state_dict",
            "rng_state",
            "config",
            "loss",
            "dataset_info",
            "timestamp",
        ):
            assert key in ckpt, key
        assert "T" in ckpt["timestamp"] and ckpt["dataset_info"]["source"] == "synthetic"


def test_dataset_summary_and_other_artifacts(train_run, tmp_path: Path) -> None:
    run, _, _ = train_run
    names = {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
    assert {
        "dataset_summary.md",
        "dataset_summary.json",
        "config.json",
        "requirements.txt",
        "training_curves.png",
        "training_log.txt",
        "checkpoints",
    } <= names
    path = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="dataset_summary.json", dst_path=str(tmp_path)
    )
    summary = json.loads(Path(path).read_text())
    assert summary["source"] == "synthetic" and summary["seed"] == 8
    assert summary["classes"] == ["airplane", "guitar"]
    assert mlflow.get_run(run.info.run_id).inputs.dataset_inputs  # the index as an MLflow dataset input
