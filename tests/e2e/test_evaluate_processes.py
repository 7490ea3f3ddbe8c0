"""The evaluate step in processes of their own: concurrent evaluations of one training run's checkpoint
all succeed (the in-process step is tested in tests/steps/test_evaluate.py)."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient


def test_concurrent_evaluations_of_one_run_all_succeed(
    tiny_checkpoint_file: Path, tmp_path: Path, mlflow_uri: str
):
    """Each process downloads into its own temporary folder: none reads another's half-written file."""
    import os
    import subprocess
    import sys

    from seqtrack_mlflow.tracking import RunLogger, run_context

    with run_context("train") as logger:
        RunLogger(logger.run_id).log_artifact(tiny_checkpoint_file, "checkpoints")
    uri = f"runs:/{logger.run_id}/checkpoints/epoch_1.ckpt"
    args = ["evaluate", "--checkpoint", uri, "--max_frames", "3", "--output_dir", str(tmp_path / "shared")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "seqtrack_mlflow.cli", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err.decode()[-2000:]
    evals = MlflowClient().search_runs(
        experiment_ids=["0"], filter_string="tags.`mlflow.runName` = 'evaluate'"
    )
    assert len(evals) == 3 and all(r.info.status == "FINISHED" for r in evals)
    assert all(r.data.metrics["auc"] == evals[0].data.metrics["auc"] for r in evals)
