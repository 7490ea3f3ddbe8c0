"""System metrics (CPU, memory) are recorded on train runs by default, and off by a parameter."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from factories import small_settings
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.steps.train import run_train


def test_system_metrics_on_by_default_and_off_by_parameter(
    tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    base = small_settings(2)
    on = dataclasses.replace(
        base, train=dataclasses.replace(base.train, system_metrics=True, samples_per_epoch=60)
    )
    off = dataclasses.replace(on, train=dataclasses.replace(on.train, system_metrics=False))
    with_metrics = run_train(on, output_dir=tmp_path)
    without = run_train(off, output_dir=tmp_path)
    client = MlflowClient()
    keys = client.get_run(with_metrics.run_id).data.metrics
    assert any(k.startswith("system/cpu_utilization") for k in keys), sorted(keys)
    assert any(k.startswith("system/system_memory_usage") for k in keys)
    assert not any(k.startswith("system/") for k in client.get_run(without.run_id).data.metrics)


def test_the_console_has_no_mlflow_info_lines(tmp_path: Path, mlflow_uri: str) -> None:
    """With system metrics on, MLflow logs "Skip logging GPU metrics" at INFO: not on our console."""
    from services import cli

    proc = cli(
        "train", "--source", "synthetic", "--search_size", "32", "--template_size", "32", "--epochs", "1",
        "--samples_per_epoch", "20", "--batch_size", "10", "--synthetic_frames", "30", "--device", "cpu",
        "--output_dir", str(tmp_path / "out"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "INFO mlflow" not in proc.stderr and "Skip logging GPU metrics" not in proc.stderr, proc.stderr
