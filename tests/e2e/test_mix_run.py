"""The four-dataset mix end to end: `mlflow run . -e train -P datasets=official ...` on synthetic trees
of the four layouts trains and logs the per-dataset counts, and a resumed mix run ends with exactly the
weights of an uninterrupted one."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from factories import mix_data
from mlflow.tracking import MlflowClient
from services import mlflow_run

from seqtrack_mlflow.config import build_settings
from seqtrack_mlflow.steps.train import run_train

MODEL = {"search_size": 32, "template_size": 32}


def _settings(root: Path, epochs: int):
    train = {"epochs": epochs, "samples_per_epoch": 20, "batch_size": 10, "seed": 8, "system_metrics": False}
    return build_settings("tiny", MODEL, {**train, "log_every": 10, "device": "cpu"}, mix_data(root))


def test_a_resumed_mix_run_matches_the_uninterrupted_one(tmp_path: Path, mlflow_uri: str) -> None:
    full = run_train(_settings(tmp_path / "data", 2), output_dir=tmp_path / "full")
    first = run_train(_settings(tmp_path / "data", 1), output_dir=tmp_path / "part")
    resumed = run_train(
        _settings(tmp_path / "data", 2),
        resume=first.run_id,
        given={"epochs": 2},
        output_dir=tmp_path / "part",
    )
    a = torch.load(full.outcome.checkpoint, weights_only=True)["model_state_dict"]
    b = torch.load(resumed.outcome.checkpoint, weights_only=True)["model_state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed mix run differs from the uninterrupted one"
    client = MlflowClient()
    for name in ("lasot", "got10k", "trackingnet", "coco"):
        full_counts = [m.value for m in client.get_metric_history(full.run_id, f"samples_{name}")]
        assert full_counts == [m.value for m in client.get_metric_history(first.run_id, f"samples_{name}")]


def test_mlflow_run_trains_on_the_mix(tmp_path: Path, _migrated_db: Path) -> None:
    shutil.copy(_migrated_db, tmp_path / "mlflow.db")
    data = mix_data(tmp_path / "data")
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "SEQTRACK_CACHE": str(tmp_path / "cache"),
    }
    params = {
        "datasets": "official", "dataset_ratios": data.dataset_ratios, "got10k_root": data.got10k_root,
        "trackingnet_root": data.trackingnet_root, "coco_root": data.coco_root, "source": "synthetic",
        "classes": "airplane", "synthetic_sequences": "3", "synthetic_frames": "24",
        "synthetic_size": "96x72",
        "seed": "8", "epochs": "1", "samples_per_epoch": "20", "batch_size": "10", "search_size": "32",
        "template_size": "32", "system_metrics": "false", "output_dir": str(tmp_path / "outputs"),
    }  # fmt: skip
    proc = mlflow_run("train", params, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GOT-10k vottrain: 3 of the split's 7,086 sequences" in proc.stdout + proc.stderr
    (run,) = MlflowClient(env["MLFLOW_TRACKING_URI"]).search_runs(experiment_ids=["0"])
    counts = [run.data.metrics[f"samples_{n}"] for n in ("lasot", "got10k", "trackingnet", "coco")]
    assert sum(counts) == 20 and run.data.params["got10k_root"] == str(Path(data.got10k_root).resolve())
