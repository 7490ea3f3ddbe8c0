"""`resume=auto` with a run_key, outside any scheduler, with real signals to real processes: the same
command, started again after a kill -9 and again after a SIGTERM, continues the job's one MLflow run to
the end with the weights, metric steps and values of an uninterrupted run; started once more after the
end, it exits 0 with one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.tracking import OWNER_TAG, RUN_KEY_TAG, stored_file

EPOCHS, SAMPLES = 3, 100
TRAIN = [
    "train", "--seed", "8", "--source", "synthetic", "--device", "cpu", "--search_size", "32",
    "--template_size", "32", "--epochs", str(EPOCHS), "--samples_per_epoch", str(SAMPLES),
    "--batch_size", "5", "--log_every", "25", "--system_metrics", "false", "--synthetic_frames", "30",
]  # fmt: skip
ENV = {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}  # one thread: bit-identical across processes


def command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "seqtrack_mlflow.cli", *TRAIN, "--output_dir", str(out), *extra]


def job(out: Path) -> list[str]:
    """The job's command: the same on every start, as a scheduler's requeue runs it."""
    return command(out, "--resume", "auto", "--run_key", "exp-7")


def run_until(cmd: list[str], cwd: Path, log: Path, ready, timeout: float = 240) -> subprocess.Popen:
    """Start `cmd` (its own process group, as a scheduler's task) and return once `ready(log text)`."""
    with open(log, "w") as sink:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env={**os.environ, **ENV}, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.time() + timeout
    while not ready(log.read_text()):
        assert proc.poll() is None, f"ended early:\n{log.read_text()[-3000:]}"
        assert time.time() < deadline, f"not ready in time:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)
    return proc


def only_run(client: MlflowClient) -> str:
    (run,) = client.search_runs(experiment_ids=["0"])
    return run.info.run_id


def uploaded(client: MlflowClient, name: str) -> bool:
    runs = client.search_runs(experiment_ids=["0"])
    return bool(runs) and f"checkpoints/{name}" in {
        a.path for a in client.list_artifacts(runs[0].info.run_id, "checkpoints")
    }


def test_the_same_command_continues_the_job_after_kill_9_and_sigterm(tmp_path: Path, mlflow_uri: str) -> None:
    out, client = tmp_path / "out", MlflowClient()
    # 1: killed with SIGKILL in epoch 2, after epoch 1's checkpoint reached the store.
    first = run_until(
        job(out),
        tmp_path,
        tmp_path / "1.log",
        lambda t: "Epoch 2 :" in t and uploaded(client, "epoch_1.ckpt"),
    )
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    run_id = only_run(client)
    run = client.get_run(run_id)
    assert run.info.status == "RUNNING" and run.data.tags[RUN_KEY_TAG] == "exp-7"
    assert f":{first.pid}:" in run.data.tags[OWNER_TAG]  # the dead owner's claim is left behind

    # 2: the same command continues that run at once; stopped by SIGTERM part-way through epoch 3.
    second = run_until(job(out), tmp_path, tmp_path / "2.log", lambda t: "Epoch 3 : 50 / 100" in t)
    os.killpg(second.pid, signal.SIGTERM)
    second.wait(timeout=120)
    log = (tmp_path / "2.log").read_text()
    assert second.returncode == 128 + signal.SIGTERM, log[-3000:]
    assert f"resume=auto: continuing job exp-7's run {run_id} (RUNNING) from its last checkpoint" in log
    assert f"its owner {run.data.tags[OWNER_TAG]} is gone" in log
    assert only_run(client) == run_id and client.get_run(run_id).info.status == "KILLED"

    # 3: the same command finishes it.
    third = subprocess.run(
        job(out), cwd=tmp_path, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert third.returncode == 0, third.stderr[-3000:]
    assert f"continuing job exp-7's run {run_id} (KILLED)" in third.stderr
    assert f"(MLflow run {run_id})" in third.stdout
    run = client.get_run(run_id)
    assert only_run(client) == run_id and run.info.status == "FINISHED"
    assert OWNER_TAG not in run.data.tags
    assert run.data.tags["seqtrack.resumed_from"] == run_id and run.data.params["resume"] == "auto"
    saved = {a.path for a in client.list_artifacts(run_id, "checkpoints")}
    assert {f"checkpoints/epoch_{e}.ckpt" for e in range(1, EPOCHS + 1)} <= saved

    # 4: after the end, the same command does nothing and says so: exit 0, one line, no new run.
    again = subprocess.run(
        job(out), cwd=tmp_path, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.strip() == (
        f"job exp-7 is done: its run {run_id} FINISHED, nothing to resume "
        "(train again under another -P run_key)"
    )
    assert only_run(client) == run_id

    # The same training uninterrupted: the same weights, metric steps and values.
    whole = subprocess.run(
        command(tmp_path / "whole"), cwd=tmp_path, env={**os.environ, **ENV}, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert whole.returncode == 0, whole.stderr[-3000:]
    whole_id = next(r.info.run_id for r in client.search_runs(["0"]) if r.info.run_id != run_id)
    # Each checkpoint is stored once, in the run's artifacts (the local copy is released after upload).
    a = torch.load(stored_file(run_id, f"checkpoints/epoch_{EPOCHS}.ckpt"), weights_only=True)
    b = torch.load(stored_file(whole_id, f"checkpoints/epoch_{EPOCHS}.ckpt"), weights_only=True)
    a, b = a["model_state_dict"], b["model_state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a), "the job's weights differ from an uninterrupted run's"
    for key in ("loss", "epoch_loss"):
        got = [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        assert [s for s, _ in got] == sorted({s for s, _ in got}), f"{key} has a step twice: {got}"
        assert sorted(got) == sorted((m.step, m.value) for m in client.get_metric_history(whole_id, key))
