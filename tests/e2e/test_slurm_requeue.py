"""deploy/slurm/train.sbatch on a real one-node Slurm cluster (tests/slurm_cluster.py): a tiny CPU
training is requeued mid-epoch (`scontrol requeue`, as a preemption does: SIGTERM, KillWait, SIGKILL),
then reaches its time-limit warning (the USR1 that `--signal=B:USR1@...` sends, here by scancel), and
each time the same job starts again and continues its one MLflow run: FINISHED, every epoch's
checkpoint, no metric step twice, the weights of an uninterrupted run. On CI (CI=true) a Slurm that
cannot start fails the test; elsewhere it skips it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from factories import ROOT
from mlflow.tracking import MlflowClient
from slurm_cluster import SlurmCluster, SlurmUnavailable, slurm_cluster

from seqtrack_mlflow.tracking import RUN_KEY_TAG, stored_file

EPOCHS, SAMPLES = 3, 100
TRAIN = [
    "--seed", "8", "--source", "synthetic", "--device", "cpu", "--search_size", "32", "--template_size",
    "32", "--epochs", str(EPOCHS), "--samples_per_epoch", str(SAMPLES), "--batch_size", "5",
    "--log_every", "25", "--system_metrics", "false", "--synthetic_frames", "30",
]  # fmt: skip
SBATCH = ROOT / "deploy" / "slurm" / "train.sbatch"
LAB = re.compile(r"# =+ LAB:.*?# =+ end of LAB lines =+\n", re.S)


def job_script(dst: Path) -> Path:
    """The recipe as a lab submits it, its LAB lines (partition, GPUs, account, time) replaced by this
    cluster's: nothing else changes."""
    text = SBATCH.read_text()
    assert len(LAB.findall(text)) == 1
    dst.write_text(LAB.sub("#SBATCH --partition=debug\n", text))
    return dst


def wait_for(predicate, what: str, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        text = log.read_text() if log.exists() else "(no job log yet)"
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s; job log:\n{text[-4000:]}"
        time.sleep(0.5)


def log_has(log: Path, pattern: str, after: str = "") -> bool:
    """Whether the job log has PATTERN (a regex) after the last occurrence of AFTER."""
    if not log.exists():
        return False
    text = log.read_text()
    return re.search(pattern, text[text.rfind(after) :] if after else text) is not None


@pytest.fixture
def cluster(tmp_path: Path, mlflow_uri: str):
    env = {
        **os.environ, "OMP_NUM_THREADS": "1", "SEQTRACK_PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }  # fmt: skip
    try:
        with slurm_cluster(env) as started:
            yield started
    except SlurmUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Slurm cannot start on CI: {exc}")
        pytest.skip(f"Slurm unavailable: {exc}")


def test_a_requeued_job_continues_its_run_to_the_weights_of_an_uninterrupted_one(
    tmp_path: Path, cluster: SlurmCluster
) -> None:
    client = MlflowClient()
    work = tmp_path / "job"
    (work / "logs").mkdir(parents=True)
    # The same training uninterrupted, outside Slurm, meanwhile: the reference for the weights.
    whole_err = tmp_path / "whole.err"
    whole = subprocess.Popen(
        [sys.executable, "-m", "seqtrack_mlflow.cli", "train", *TRAIN, "--output_dir", str(tmp_path / "w")],
        cwd=tmp_path, env=cluster.env, stdout=subprocess.DEVNULL, stderr=whole_err.open("w"),
    )  # fmt: skip
    try:
        job_id = cluster.run(
            "sbatch", "--parsable", f"--chdir={work}", str(job_script(tmp_path / "train.sbatch")),
            *TRAIN, "--output_dir", str(work / "outputs"),
        ).strip()  # fmt: skip
        log = work / "logs" / f"seqtrack-train-{job_id}.out"
        started = time.monotonic()

        # Start 1, part-way through epoch 2: requeued, as a preemption does.
        wait_for(lambda: log_has(log, r"Epoch 2 : 25 / 100"), "epoch 2 in start 1", 180, log)
        cluster.run("scontrol", "requeue", job_id)
        # Start 2 continues the run; its time-limit warning (USR1 to the batch shell) at its first report
        # (as early as possible: a loaded machine delays the signal): the script stops the training and
        # requeues the job itself.
        wait_for(
            lambda: log_has(log, r"Epoch \d : \d+ / 100", after=" start 2 "), "a report in start 2", 180, log
        )
        cluster.run("scancel", "--batch", "--signal=USR1", job_id)
        # Start 3 finishes it.
        wait_for(lambda: cluster.job_state(job_id).get("JobState") == "COMPLETED", "completed job", 300, log)
        print(f"job {job_id}: {time.monotonic() - started:.0f} s from submission to completion")
    finally:
        if whole.poll() is None:
            whole.wait(timeout=300)
    text = log.read_text()
    assert whole.returncode == 0, whole_err.read_text()[-3000:]
    state = cluster.job_state(job_id)
    assert state["Restarts"] == "2" and state["ExitCode"] == "0:0", state

    (run,) = [r for r in client.search_runs(["0"]) if r.data.tags.get(RUN_KEY_TAG)]
    run_id = run.info.run_id
    assert run.info.status == "FINISHED", text[-4000:]
    assert run.data.tags[RUN_KEY_TAG] == f"slurm:seqtest/{job_id}"
    assert run.data.tags["seqtrack.resumed_from"] == run_id
    # Each start in the log: the first starts the run, the others continue it from its checkpoint.
    starts = re.findall(rf"job {job_id} start (\d+) ", text)
    assert starts == ["1", "2", "3"], text[-4000:]
    assert "CANCELLED AT" in text and "DUE TO JOB REQUEUE" in text
    assert f"resume=auto: job slurm:seqtest/{job_id} has no run yet: starting one" in text
    assert text.count(f"resume=auto: continuing job slurm:seqtest/{job_id}'s run {run_id} (KILLED)") == 2
    assert text.count("interrupted: SIGTERM at epoch") == 2, text[-4000:]
    assert f"job {job_id}: time limit near" in text

    saved = {a.path for a in client.list_artifacts(run_id, "checkpoints")}
    assert {f"checkpoints/epoch_{e}.ckpt" for e in range(1, EPOCHS + 1)} <= saved, saved
    whole_id = next(r.info.run_id for r in client.search_runs(["0"]) if r.info.run_id != run_id)
    for key in ("loss", "epoch_loss"):
        got = [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        assert len({s for s, _ in got}) == len(got), f"{key} has a step twice: {sorted(got)}"
        assert sorted(got) == sorted((m.step, m.value) for m in client.get_metric_history(whole_id, key))
    tags = {k: v for k, v in run.data.tags.items() if k.startswith("seqtrack.") and "commit" not in k}
    print(f"MLflow run {run_id}: {run.info.status}, tags {tags}, checkpoints {sorted(saved)}")
    print(f"loss steps {[m.step for m in client.get_metric_history(run_id, 'loss')]}")
    name = f"epoch_{EPOCHS}.ckpt"
    # Each checkpoint is stored once, in the run's artifacts (the local copy is released after upload).
    a = torch.load(stored_file(run_id, f"checkpoints/{name}"), weights_only=True)["model_state_dict"]
    b = torch.load(stored_file(whole_id, f"checkpoints/{name}"), weights_only=True)["model_state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a), (
        "the requeued job's weights differ from an uninterrupted run's"
    )
