"""The team set-up end to end: `mlflow server` on PostgreSQL with an S3 artifact store, served to clients
that have no S3 credentials (`--serve-artifacts`); the project's runs go through it unchanged.

Real components on 127.0.0.1, in temporary folders, stopped afterwards: a PostgreSQL cluster from the
machine's own binaries, moto's S3 in server mode (MinIO's stand-in; `deploy/docker-compose.yml` runs
MinIO), and `mlflow server`. Where one cannot start the test is skipped with the reason, except on CI
(`CI=true`), where it fails: CI never passes without it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from factories import FAST_TRAIN
from services import Unavailable, download_artifact, free_port, mlflow_run, skip_or_fail_on_ci, stop_process
from team_services import postgres_server, s3_client, s3_endpoint, start_team_mlflow_server

# As in deploy/docker-compose.yml: the bucket its minio-init service creates, the server's destination.
BUCKET, PREFIX = "mlflow", "artifacts"
EXPERIMENT = "seqtrack"


@dataclass
class Team:
    url: str  # what training machines set as MLFLOW_TRACKING_URI
    backend_store_uri: str  # postgresql://...
    s3_endpoint: str  # the server's MLFLOW_S3_ENDPOINT_URL
    server_home: Path  # the server's working folder


@pytest.fixture
def team(tmp_path: Path):
    """PostgreSQL + S3 endpoint + `mlflow server` in front of both, stopped (in reverse) afterwards."""
    with contextlib.ExitStack() as stack:
        try:
            backend = stack.enter_context(postgres_server())
            s3 = stack.enter_context(s3_endpoint(tmp_path / "s3"))
        except Unavailable as exc:
            missing = str(exc)
        else:
            missing = None
        if missing:
            skip_or_fail_on_ci(f"team server test: cannot start its components here: {missing}")
        s3_client(s3).create_bucket(Bucket=BUCKET)
        port, home = free_port(), tmp_path / "server"
        proc = start_team_mlflow_server(home, port, backend, f"s3://{BUCKET}/{PREFIX}", s3)
        stack.callback(stop_process, proc)
        yield Team(f"http://127.0.0.1:{port}", backend, s3, home)


def s3_objects(endpoint: str) -> dict[str, int]:
    """Every object of the bucket: key -> size."""
    pages = s3_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}


def test_project_runs_through_postgres_and_s3_backed_server(
    team: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import sqlalchemy
    from mlflow.tracking import MlflowClient

    # A training machine: the tracking URI and the experiment, nothing else. No S3 endpoint, no
    # credentials, not even from ~/.aws: every artifact goes through the server.
    for var in [v for v in os.environ if v.startswith("AWS_")] + ["MLFLOW_S3_ENDPOINT_URL"]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team.url)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
    mlflow.set_tracking_uri(team.url)
    client = MlflowClient(team.url)

    # 1. The whole pipeline, as the README's main command, with a short real training (2 epochs).
    proc = mlflow_run("main", {**FAST_TRAIN, "output_dir": str(tmp_path / "main"), "max_frames": "20"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment.artifact_location == f"mlflow-artifacts:/{experiment.experiment_id}"
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {
        r.data.tags["mlflow.runName"]: r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert set(children) == {"select_data", "train", "evaluate"}
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert parent.data.params["seed"] == "8" and parent.data.params["epochs"] == "2"
    assert parent.data.params["selected_classes"] == "airplane,guitar"
    assert 0.0 <= parent.data.metrics["auc"] <= 100.0
    assert parent.data.metrics["auc"] == children["evaluate"].data.metrics["auc"]
    select_id, train_id = children["select_data"].info.run_id, children["train"].info.run_id
    assert children["evaluate"].data.params["checkpoint"] == f"runs:/{train_id}/checkpoints/epoch_2.ckpt"

    # 2. `train` resumed by run id: the same run goes on to epoch 3.
    proc = mlflow_run("train", {"resume": train_id, "epochs": "3", "output_dir": str(tmp_path / "resume")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    train = client.get_run(train_id)
    assert train.info.status == "FINISHED"
    assert train.data.params["epochs"] == "2" and train.data.params["resumed.epochs"] == "3"
    steps = [m.step for m in client.get_metric_history(train_id, "epoch_loss")]
    assert len(steps) == len(set(steps)) == 3  # one per epoch, none twice
    checkpoints = {a.path for a in client.list_artifacts(train_id, "checkpoints")}
    assert {f"checkpoints/epoch_{e}.ckpt" for e in (1, 2, 3)} <= checkpoints

    # 3. `evaluate` from a runs:/ URI, resolved through the server.
    uri = f"runs:/{train_id}/checkpoints/epoch_3.ckpt"
    proc = mlflow_run("evaluate", {"checkpoint": uri, "max_frames": "10", "output_dir": str(tmp_path / "ev")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    evals = client.search_runs([experiment.experiment_id], filter_string="tags.`mlflow.runName` = 'evaluate'")
    (standalone,) = [r for r in evals if "mlflow.parentRunId" not in r.data.tags]
    assert standalone.data.params["checkpoint"] == uri
    assert standalone.data.tags["seqtrack.train_run_id"] == train_id
    assert 0.0 <= standalone.data.metrics["auc"] <= 100.0

    # 4. `mlflow artifacts download` through the server.
    path = download_artifact(train_id, "checkpoints/epoch_3.ckpt", tmp_path / "download", team.url)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["mlflow_run_id"] == train_id and ckpt["epoch"] == 3

    # The artifacts really live in the bucket, under the server's destination, one folder per run...
    objects = s3_objects(team.s3_endpoint)
    exp = experiment.experiment_id

    def stored(run_id: str, artifact: str) -> str:
        return f"{PREFIX}/{exp}/{run_id}/artifacts/{artifact}"

    assert objects[stored(train_id, "checkpoints/epoch_3.ckpt")] == path.stat().st_size
    body = s3_client(team.s3_endpoint).get_object(
        Bucket=BUCKET, Key=stored(train_id, "checkpoints/epoch_3.ckpt")
    )["Body"]
    assert body.read() == path.read_bytes()
    for run_id, artifact in [
        (train_id, "checkpoints/epoch_1.ckpt"),
        (train_id, "training_log.txt"),
        (select_id, "dataset_summary.json"),
        (children["evaluate"].info.run_id, "per_sequence.csv"),
        (standalone.info.run_id, "success_plot.png"),
    ]:
        assert stored(run_id, artifact) in objects, artifact
    assert any(k.startswith(stored(select_id, "index/")) for k in objects)
    # ... and nowhere else: not on the server's disk, not in the client's folder.
    assert not (team.server_home / "mlartifacts").exists()
    assert not (tmp_path / "mlruns").exists()

    # The runs, params and metrics are PostgreSQL's.
    engine = sqlalchemy.create_engine(team.backend_store_uri)
    try:
        with engine.connect() as db:
            stored_runs = dict(db.execute(sqlalchemy.text("SELECT run_uuid, status FROM runs")).all())
            epochs = db.execute(
                sqlalchemy.text("SELECT value FROM params WHERE run_uuid = :r AND key = 'epochs'"),
                {"r": train_id},
            ).scalar_one()
            auc = db.execute(
                sqlalchemy.text("SELECT value FROM latest_metrics WHERE run_uuid = :r AND key = 'auc'"),
                {"r": standalone.info.run_id},
            ).scalar_one()
    finally:
        engine.dispose()
    ours = {r.info.run_id for r in runs} | {standalone.info.run_id}
    assert ours <= set(stored_runs) and {stored_runs[r] for r in ours} == {"FINISHED"}
    assert epochs == "2"
    assert auc == pytest.approx(standalone.data.metrics["auc"])
