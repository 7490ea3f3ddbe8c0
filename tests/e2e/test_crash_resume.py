"""Issue 20, case 1, for real: a training process killed with SIGKILL (as the OOM killer or a scheduler's
grace period does) cannot release its run; an immediate `train --resume <run id>` on the same machine is
accepted at once (the dead owner's process is gone) and finishes the same run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from seqtrack_mlflow.tracking import HEARTBEAT_TAG, OWNER_TAG

EPOCHS, SAMPLES, LOG_EVERY = 3, 100, 25
TRAIN = [
    "train", "--seed", "8", "--source", "synthetic", "--device", "cpu", "--search_size", "32",
    "--template_size", "32", "--epochs", str(EPOCHS), "--samples_per_epoch", str(SAMPLES),
    "--batch_size", "5", "--log_every", str(LOG_EVERY), "--system_metrics", "false",
    "--synthetic_frames", "30",
]  # fmt: skip
ENV = {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "seqtrack_mlflow.cli", *args]


def test_resume_right_after_kill_9_is_accepted_and_finishes_the_run(tmp_path: Path, mlflow_uri: str) -> None:
    out, log = tmp_path / "out", tmp_path / "first.log"
    with open(log, "w") as sink:
        first = subprocess.Popen(
            cli(*TRAIN, "--output_dir", str(out)),
            cwd=tmp_path, env={**os.environ, **ENV}, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    client = MlflowClient()
    try:
        deadline = time.time() + 180
        run_id, uploaded = None, False
        while not (uploaded and "Epoch 2 :" in log.read_text()):  # owned, epoch 1 saved and sent
            assert first.poll() is None, f"training ended early:\n{log.read_text()[-3000:]}"
            assert time.time() < deadline, f"no checkpoint in time:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
            runs = client.search_runs(experiment_ids=["0"])
            if not runs:
                continue
            run_id = runs[0].info.run_id
            local = out / run_id / "checkpoints" / "epoch_1.ckpt"
            sent = {a.path: a.file_size for a in client.list_artifacts(run_id, "checkpoints")}
            # the local copy goes once the (local) store holds the whole file
            uploaded = bool(sent.get("checkpoints/epoch_1.ckpt")) and not local.exists()
        tags = client.get_run(run_id).data.tags
        assert f":{first.pid}:" in tags[OWNER_TAG]
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    run = client.get_run(run_id)
    assert run.info.status == "RUNNING" and run.data.tags[OWNER_TAG] == tags[OWNER_TAG]  # left as it was
    # As if the dead owner had beaten a moment ago: only its process's absence can free the run.
    client.set_tag(run_id, HEARTBEAT_TAG, f"{time.time():.0f}")

    started = time.time()
    resumed = subprocess.run(
        cli("train", "--resume", run_id, "--output_dir", str(out)),
        cwd=tmp_path, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    took = time.time() - started
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "being continued" not in resumed.stderr and "Traceback" not in resumed.stderr
    assert f"its owner {tags[OWNER_TAG]} is gone (its process {first.pid} no longer exists)" in resumed.stderr
    assert took < 120, f"the resume took {took:.0f} s"
    assert f"(MLflow run {run_id})" in resumed.stdout  # the same run goes on
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert OWNER_TAG not in run.data.tags  # the resumer released it
    saved = {a.path for a in client.list_artifacts(run_id, "checkpoints")}
    assert {f"checkpoints/epoch_{e}.ckpt" for e in range(1, EPOCHS + 1)} <= saved
    steps = [m.step for m in client.get_metric_history(run_id, "epoch_loss")]
    assert sorted(steps) == [e * SAMPLES for e in range(1, EPOCHS + 1)], steps
    assert len(client.search_runs(experiment_ids=["0"])) == 1
