"""Issue 11, item 2: the tracking server goes away during training (a real `mlflow server`, stopped and
restarted on 127.0.0.1). Training goes on; one line when the server is lost, one when it is back; no
metric point and no checkpoint is lost; a run whose server never returns ends with one line naming its
local folder and `seqtrack-mlflow sync <folder>`, which uploads everything later."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from services import cli, free_port, start_mlflow_server, stop_mlflow_server

from seqtrack_mlflow.tracking.registry import run_model_id

EPOCHS, SAMPLES, LOG_EVERY = 3, 200, 10
TRAIN = [
    "train",
    "--source",
    "synthetic",
    "--search_size",
    "32",
    "--template_size",
    "32",
    "--epochs",
    str(EPOCHS),
    "--samples_per_epoch",
    str(SAMPLES),
    "--batch_size",
    "5",
    "--log_every",
    str(LOG_EVERY),
    "--system_metrics",
    "false",
    "--device",
    "cpu",
    "--synthetic_frames",
    "30",
    "--seed",
    "8",
]
REPORT_STEPS = list(range(LOG_EVERY, EPOCHS * SAMPLES + 1, LOG_EVERY))
EPOCH_STEPS = [e * SAMPLES for e in range(1, EPOCHS + 1)]
LOST = "is unreachable ("  # the warning line when the server is lost
BACK = "is back after"


def start_training(tmp_path: Path, url: str, final_wait_s: int) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "train.log"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": url,
        "SEQTRACK_TRACKING_PROBE_S": "2",
        "SEQTRACK_TRACKING_FINAL_WAIT_S": str(final_wait_s),
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "seqtrack_mlflow.cli", *TRAIN, "--output_dir", str(tmp_path / "out")],
        stdout=open(log, "w"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
    )
    return proc, log


def wait_for(what: str, ready: Callable[[], bool], proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.time() + timeout
    while not ready():
        if proc.poll() is not None and not ready():
            pytest.fail(f"training ended (exit {proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail(f"no {what} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def checkpoints_on_disk(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "out").glob("*/checkpoints/epoch_*.ckpt"))


def assert_run_complete(url: str, run_id: str) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    loss = [m.step for m in client.get_metric_history(run_id, "loss")]
    assert sorted(loss) == REPORT_STEPS, "every report step exactly once"
    epoch_loss = [m.step for m in client.get_metric_history(run_id, "epoch_loss")]
    assert sorted(epoch_loss) == EPOCH_STEPS
    saved = {a.path for a in client.list_artifacts(run_id, "checkpoints")}
    assert saved == {f"checkpoints/epoch_{e}.ckpt" for e in range(1, EPOCHS + 1)}
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"training_log.txt", "config.json", "requirements.txt"} <= top
    assert run_model_id(run_id, client) is not None  # the tracker as the run's MLflow model, sent late
    assert run.data.params["epochs"] == str(EPOCHS)


def run_id_of(tmp_path: Path) -> str:
    (folder,) = [p for p in (tmp_path / "out").iterdir() if re.fullmatch(r"[0-9a-f]{32}", p.name)]
    return folder.name


def test_server_lost_and_back_during_training(tmp_path: Path) -> None:
    port = free_port()
    home, url = tmp_path / "server", f"http://127.0.0.1:{port}"
    server = start_mlflow_server(home, port)
    proc, log = start_training(tmp_path, url, final_wait_s=90)
    try:
        wait_for("first report", lambda: "Epoch 1 :" in log.read_text(), proc, log, 90)
        stop_mlflow_server(server)
        wait_for("checkpoint during the outage", lambda: bool(checkpoints_on_disk(tmp_path)), proc, log, 90)
        wait_for("'lost' line", lambda: LOST in log.read_text(), proc, log, 60)
        server = start_mlflow_server(home, port, log_name="server2.log")
        assert proc.wait(timeout=150) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        stop_mlflow_server(server)
    server = start_mlflow_server(home, port, log_name="server3.log")  # the test's own reads
    try:
        out = log.read_text()
        assert out.count(LOST) == 1 and out.count(BACK) == 1, out[-3000:]
        assert "Traceback" not in out and "sync" not in out, out[-3000:]
        assert_run_complete(url, run_id_of(tmp_path))
    finally:
        stop_mlflow_server(server)


def test_server_never_back_then_sync(tmp_path: Path) -> None:
    """The server does not return before the run ends: exit 2 with one line naming the local folder and
    the upload command; that command, once a server is up, uploads everything and ends the run FINISHED."""
    port = free_port()
    home, url = tmp_path / "server", f"http://127.0.0.1:{port}"
    server = start_mlflow_server(home, port)
    proc, log = start_training(tmp_path, url, final_wait_s=3)
    try:
        wait_for("first report", lambda: "Epoch 1 :" in log.read_text(), proc, log, 90)
        stop_mlflow_server(server)
        assert proc.wait(timeout=150) == 2, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    out = log.read_text()
    assert "Traceback" not in out, out[-3000:]
    assert out.count(LOST) == 1 and BACK not in out, out[-3000:]
    (line,) = [x for x in out.splitlines() if "seqtrack-mlflow sync" in x]
    folder = Path(line.rsplit("seqtrack-mlflow sync ", 1)[1].strip())
    run_id = run_id_of(tmp_path)
    assert folder == (tmp_path / "out" / run_id).resolve() and line.startswith("error: ")
    assert len(checkpoints_on_disk(tmp_path)) == EPOCHS
    assert (folder / "pending_metrics.jsonl").is_file()

    down = cli("sync", str(folder), env={"MLFLOW_TRACKING_URI": url}, timeout=120)  # still away: one line
    assert down.returncode == 2 and len(down.stderr.strip().splitlines()) == 1, down.stderr
    server = start_mlflow_server(home, port, log_name="server2.log")
    try:
        up = cli("sync", str(folder), env={"MLFLOW_TRACKING_URI": url}, timeout=120)
        assert up.returncode == 0, up.stderr[-3000:]
        assert "status FINISHED" in up.stdout
        assert_run_complete(url, run_id)
        assert not (folder / "pending_metrics.jsonl").exists()
    finally:
        stop_mlflow_server(server)
