"""A checkpoint is stored once per machine with a local artifact store (a real SQLite store, whose
artifacts are a folder): an uploaded file's local copy is released only once the store holds it, so a
checkpoint waiting in the outbox stays on disk until `sync` uploads it; pruning removes only
epoch_N.ckpt files the store holds; a remote store keeps the local copy."""

from __future__ import annotations

from pathlib import Path

import pytest
from factories import artifact, artifacts, outbox
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.tracking import stored_file, sync_run_folder
from seqtrack_mlflow.tracking.outbox_check import OutboxError
from seqtrack_mlflow.tracking.stored import local_artifact_dir, release_local_copy

CKPT = "checkpoints/epoch_1.ckpt"


def release(path: str = CKPT) -> dict:
    return {"op": "release", "path": path, "artifact_path": "checkpoints"}


def prune(*names: str, path: str | None = "checkpoints") -> dict:
    return {"op": "prune", "names": list(names), "artifact_path": "checkpoints", "path": path}


def test_a_checkpoint_waiting_in_the_outbox_stays_until_sync_uploads_it_then_lies_once(
    tmp_path: Path, mlflow_uri: str
) -> None:
    run_id, folder = outbox(tmp_path, [artifact(CKPT, "checkpoints"), release()])
    assert (folder / CKPT).read_bytes() == b"weights"  # not uploaded yet: the only copy
    sync_run_folder(folder)
    assert not (folder / CKPT).exists()  # the store holds it: no second copy on this machine
    held = stored_file(run_id, CKPT)
    assert held is not None and held.read_bytes() == b"weights"
    assert artifacts(run_id) == {CKPT}
    for outside in ("/etc/passwd", "../../../etc/passwd", "checkpoints/../../meta.yaml"):
        assert stored_file(run_id, outside) is None, outside  # only files inside the run's artifacts


def test_a_release_before_the_upload_keeps_the_file(tmp_path: Path, mlflow_uri: str) -> None:
    run_id, folder = outbox(tmp_path, [release()])
    sync_run_folder(folder)
    assert (folder / CKPT).read_bytes() == b"weights" and stored_file(run_id, CKPT) is None


def test_a_remote_artifact_store_keeps_the_local_copy(tmp_path: Path, mlflow_uri: str) -> None:
    client = MlflowClient()
    exp = client.create_experiment("remote", artifact_location="s3://bucket/nowhere")
    run_id = client.create_run(exp).info.run_id
    path = tmp_path / "epoch_1.ckpt"
    path.write_bytes(b"weights")
    assert local_artifact_dir(client.get_run(run_id).info.artifact_uri) is None
    assert not release_local_copy(client, run_id, path, "checkpoints") and path.is_file()
    assert stored_file(run_id, CKPT) is None  # evaluate downloads from a remote store, as before


def test_prune_removes_only_stored_epoch_checkpoints_here_and_in_the_store(
    tmp_path: Path, mlflow_uri: str
) -> None:
    ops = [artifact(f"checkpoints/{name}", "checkpoints") for name in ("epoch_1.ckpt", "epoch_2.ckpt")]
    ops += [
        artifact("checkpoints/epoch_3_partial.ckpt", "checkpoints"),
        prune("epoch_1.ckpt", "epoch_3.ckpt"),
    ]
    run_id, folder = outbox(tmp_path, ops)
    for name in ("epoch_2.ckpt", "epoch_3.ckpt", "epoch_3_partial.ckpt"):
        (folder / "checkpoints" / name).write_bytes(name.encode())
    sync_run_folder(folder)
    assert artifacts(run_id) == {"checkpoints/epoch_2.ckpt", "checkpoints/epoch_3_partial.ckpt"}
    left = sorted(p.name for p in (folder / "checkpoints").iterdir())
    # epoch_1 went with the store's copy; epoch_3 was never uploaded: its only copy stays
    assert left == ["epoch_2.ckpt", "epoch_3.ckpt", "epoch_3_partial.ckpt"]


@pytest.mark.parametrize(
    "op",
    [
        prune("../training_log.txt"),
        prune("epoch_1_partial.ckpt"),
        prune("epoch_1.ckpt", path="../elsewhere"),
        release("../elsewhere/secret.txt"),
    ],
)
def test_sync_refuses_a_release_or_prune_record_it_did_not_write(
    tmp_path: Path, mlflow_uri: str, op: dict
) -> None:
    run_id, folder = outbox(tmp_path, [op])
    with pytest.raises(OutboxError, match="nothing was uploaded"):
        sync_run_folder(folder)
    assert (folder / CKPT).is_file() and (tmp_path / "elsewhere" / "secret.txt").is_file()
