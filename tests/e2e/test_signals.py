"""SIGTERM and Ctrl-C sent for real to real processes: runs end KILLED, the state so far is saved, one
line says how to resume, and the resumed run ends with exactly the weights of an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from factories import ROOT
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.tracking import stored_file

TRAIN = [
    "train", "--seed", "8", "--source", "synthetic", "--device", "cpu", "--search_size", "32",
    "--template_size", "32", "--epochs", "3", "--samples_per_epoch", "400", "--batch_size", "5",
    "--log_every", "50", "--system_metrics", "false", "--synthetic_frames", "30",
]  # fmt: skip
ENV = {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}  # one thread: bit-identical across processes


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    """A process in its own group, as a shell job or a scheduler's task is."""
    return subprocess.Popen(
        args,
        cwd=cwd,
        env={**os.environ, **ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_line(proc: subprocess.Popen, prefix: str, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    for line in proc.stdout:
        if line.startswith(prefix):
            return
        assert time.time() < deadline, f"no {prefix!r} line in time"
    pytest.fail(f"the process ended before printing {prefix!r}: {proc.stderr.read()[-2000:]}")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "seqtrack_mlflow.cli", *args]


def test_sigterm_saves_the_state_ends_the_run_killed_and_resume_is_exact(tmp_path: Path, mlflow_uri: str):
    out = tmp_path / "out"
    proc = start(cli(*TRAIN, "--output_dir", str(out)), tmp_path)
    wait_for_line(proc, "Epoch 2 : 100 / 400")  # part-way through epoch 2
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    (line,) = [x for x in stderr.splitlines() if x.startswith("interrupted: ")]
    assert "Traceback" not in stderr
    (run,) = MlflowClient().search_runs(experiment_ids=["0"])
    run_id = run.info.run_id
    assert run.info.status == "KILLED"
    assert "SIGTERM at epoch 2, sample" in line and f"-P resume={run_id}" in line
    # uploaded to the local store, which holds the only copy: resume reads it there
    assert not (out / run_id / "checkpoints" / "epoch_2_partial.ckpt").exists()
    partial = stored_file(run_id, "checkpoints/epoch_2_partial.ckpt")
    assert partial is not None and f"run {run_id}'s checkpoints/epoch_2_partial.ckpt" in line
    artifacts = {a.path for a in MlflowClient().list_artifacts(run_id, "checkpoints")}
    assert artifacts == {"checkpoints/epoch_1.ckpt", "checkpoints/epoch_2_partial.ckpt"}

    resumed = subprocess.run(
        cli("train", "--resume", run_id, "--output_dir", str(out)),
        cwd=tmp_path, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert MlflowClient().get_run(run_id).info.status == "FINISHED"
    whole = subprocess.run(
        cli(*TRAIN, "--output_dir", str(tmp_path / "whole")),
        cwd=tmp_path, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert whole.returncode == 0, whole.stderr[-2000:]
    whole_id = next(
        r.info.run_id for r in MlflowClient().search_runs(experiment_ids=["0"]) if r.info.run_id != run_id
    )
    a = torch.load(stored_file(run_id, "checkpoints/epoch_3.ckpt"), weights_only=True)["model_state_dict"]
    b = torch.load(stored_file(whole_id, "checkpoints/epoch_3.ckpt"), weights_only=True)
    assert all(torch.equal(a[k], b["model_state_dict"][k]) for k in a), "resumed weights differ"
    for key in ("loss", "epoch_loss"):
        steps = [m.step for m in MlflowClient().get_metric_history(run_id, key)]
        assert steps == sorted(set(steps)), f"{key} has a step twice: {steps}"
        assert steps == [m.step for m in MlflowClient().get_metric_history(whole_id, key)]
    losses = {m.step: m.value for m in MlflowClient().get_metric_history(run_id, "loss")}
    assert losses == {m.step: m.value for m in MlflowClient().get_metric_history(whole_id, "loss")}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_main_ends_the_parent_and_the_nested_runs_killed(signum, tmp_path: Path, mlflow_uri: str):
    """Ctrl-C (SIGINT) or `kill`/a scheduler (SIGTERM) on `mlflow run . -e main`'s process group."""
    params = [
        "-P", "seed=8", "-P", "source=synthetic", "-P", "system_metrics=false", "-P", "search_size=32",
        "-P", "template_size=32", "-P", "samples_per_epoch=400", "-P", "batch_size=5",
        "-P", "synthetic_frames=30", "-P", f"output_dir={tmp_path / 'out'}",
    ]  # fmt: skip
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        str(ROOT),
        "--env-manager",
        "local",
        "-e",
        "main",
        *params,
    ]
    proc = start(command, tmp_path)
    wait_for_line(proc, "Epoch 1 : 100 / 400")
    os.killpg(proc.pid, signum)
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode != 0
    if signum == signal.SIGTERM:  # the launcher died at once: only our process wrote (see below)
        deadline = time.time() + 60
        while any(r.info.status == "RUNNING" for r in MlflowClient().search_runs(experiment_ids=["0"])):
            assert time.time() < deadline, "a run is still RUNNING"
            time.sleep(0.5)
    runs = {r.data.tags["mlflow.runName"]: r for r in MlflowClient().search_runs(experiment_ids=["0"])}
    assert not [name for name, r in runs.items() if r.info.status == "RUNNING"], stderr[-2000:]
    assert runs["train"].info.status == "KILLED", stderr[-3000:]
    assert runs["select_data"].info.status == "FINISHED"
    (parent,) = [r for r in runs.values() if "mlflow.parentRunId" not in r.data.tags]
    name = signal.Signals(signum).name
    assert parent.data.tags["seqtrack.interrupted"] == runs["train"].data.tags["seqtrack.interrupted"] == name
    # After a Ctrl-C, MLflow's launcher overwrites its run's status with FAILED (its "already
    # terminated?" check compares a status name with status numbers); SIGTERM kills the launcher first.
    assert parent.info.status == ("KILLED" if signum == signal.SIGTERM else "FAILED")
