"""`mlflow run . -e main -P resume=auto -P run_key=...` stopped by SIGTERM in training and started again:
the same parent run goes on, its FINISHED select_data run is reused, its train run continues from the
partial checkpoint, evaluate runs, the parent ends FINISHED; a third start exits 0 with one line. Under
`mlflow run` each start's own run (MLFLOW_RUN_ID) points at the run it continued."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from factories import FAST_TRAIN, ROOT
from mlflow.tracking import MlflowClient
from services import mlflow_run

from seqtrack_mlflow.tracking import RUN_KEY_TAG


def test_a_restarted_main_job_continues_its_parent_and_train_runs(tmp_path: Path, mlflow_uri: str) -> None:
    params = {
        **FAST_TRAIN, "search_size": "32", "template_size": "32", "batch_size": "5", "log_every": "25",
        "output_dir": str(tmp_path / "out"), "max_frames": "20", "model_name": "none",
        "resume": "auto", "run_key": "pipe-1",
    }  # fmt: skip
    command = [sys.executable, "-m", "mlflow", "run", str(ROOT), "--env-manager", "local", "-e", "main"]
    for key, value in params.items():
        command += ["-P", f"{key}={value}"]
    log = tmp_path / "first.log"
    with open(log, "w") as sink:
        first = subprocess.Popen(
            command, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"},
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.time() + 300
    while "Epoch 2 : 25 / 100" not in log.read_text():
        assert first.poll() is None and time.time() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGTERM)
    first.wait(timeout=120)
    client = MlflowClient()
    deadline = time.time() + 60
    while any(r.info.status == "RUNNING" for r in client.search_runs(["0"])):
        assert time.time() < deadline, "a run is still RUNNING"
        time.sleep(0.5)
    (parent,) = client.search_runs(["0"], filter_string=f"tags.`{RUN_KEY_TAG}` = 'pipe-1'")
    parent_id = parent.info.run_id
    assert parent.info.status == "KILLED"
    children = lambda: {  # noqa: E731
        r.data.tags["mlflow.runName"]: r
        for r in client.search_runs(["0"], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")
    }
    before = children()
    assert before["select_data"].info.status == "FINISHED" and before["train"].info.status == "KILLED"

    second = mlflow_run("main", params, env={"OMP_NUM_THREADS": "1"})
    assert second.returncode == 0, second.stderr[-3000:]
    assert (
        f"resume=auto: continuing job pipe-1's run {parent_id} (KILLED): the train run "
        f"{before['train'].info.run_id} continues from its last checkpoint"
    ) in second.stderr
    assert client.get_run(parent_id).info.status == "FINISHED"
    nested = client.search_runs(["0"], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert sorted(r.data.tags["mlflow.runName"] for r in nested) == ["evaluate", "select_data", "train"]
    after = children()
    for step in ("select_data", "train"):  # reused and continued, not redone
        assert after[step].info.run_id == before[step].info.run_id
        assert after[step].info.status == "FINISHED"
    train_id = after["train"].info.run_id
    steps = [m.step for m in client.get_metric_history(train_id, "loss")]
    assert steps == sorted(set(steps)) and steps[-1] == 200, steps
    assert client.get_run(parent_id).data.tags["seqtrack.train_run_id"] == train_id
    # The second start's own run (opened by `mlflow run`) names the run it continued.
    (launcher,) = [r for r in client.search_runs(["0"]) if r.data.tags.get("seqtrack.continued_in")]
    assert launcher.data.tags["seqtrack.continued_in"] == parent_id

    third = mlflow_run("main", params)
    assert third.returncode == 0, third.stderr[-3000:]
    assert f"job pipe-1 is done: its run {parent_id} FINISHED" in third.stdout
