"""Issue 23, item 6: with a local store (SQLite, artifacts in a folder) every checkpoint is stored once
on the machine: training uploads it and removes its local copy, evaluate and resume read a runs:/
checkpoint where it lies (no outputs/downloads), and `keep_checkpoints=N` keeps the last N epoch
checkpoints plus the best by epoch IoU, from which a resume still continues. Real tiny training."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from factories import small_settings
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.config import TrackerConfig
from seqtrack_mlflow.steps.evaluate import run_evaluate
from seqtrack_mlflow.steps.train import run_train
from seqtrack_mlflow.tracking import stored_file
from seqtrack_mlflow.tracking.stored import local_artifact_dir


def settings(epochs: int, keep: int | None = None):
    s = small_settings(epochs)
    return dataclasses.replace(s, train=dataclasses.replace(s.train, keep_checkpoints=keep))


def checkpoint_names(run_id: str) -> set[str]:
    return {Path(a.path).name for a in MlflowClient().list_artifacts(run_id, "checkpoints")}


def epoch_ckpt_files(root: Path) -> list[Path]:
    return sorted(root.rglob("epoch_*.ckpt"))


def test_each_checkpoint_lies_once_and_evaluate_reads_it_in_place(tmp_path: Path, mlflow_uri: str) -> None:
    out = tmp_path / "outputs"
    trained = run_train(settings(3), output_dir=out)
    run_id = trained.run_id
    assert checkpoint_names(run_id) == {f"epoch_{e}.ckpt" for e in (1, 2, 3)}  # default: all kept
    assert epoch_ckpt_files(out) == []  # uploaded: no second copy under outputs/
    store = local_artifact_dir(MlflowClient().get_run(run_id).info.artifact_uri)
    assert store is not None  # a SQLite store's artifacts: a local folder
    held = [p.relative_to(store).as_posix() for p in epoch_ckpt_files(store)]
    assert sorted(held) == [f"checkpoints/epoch_{e}.ckpt" for e in (1, 2, 3)]  # once each on the machine
    last = stored_file(run_id, "checkpoints/epoch_3.ckpt")
    assert trained.outcome.checkpoint == last and torch.load(last, weights_only=True)["epoch"] == 3
    (model,) = MlflowClient().search_logged_models(experiment_ids=["0"])
    assert model.source_run_id == run_id  # the tracker was logged from the last checkpoint before it went
    (copy,) = local_artifact_dir(model.artifact_location).rglob("epoch_3.ckpt")
    assert copy.samefile(last)  # the model's file is the run's checkpoint (a hard link): its bytes once

    before = last.stat().st_mtime_ns, last.read_bytes()
    for checkpoint in (trained.checkpoint_ref, run_id):
        result = run_evaluate(checkpoint, TrackerConfig(max_frames=4), device="cpu", output_dir=out)
        assert result.metrics["auc"] >= 0.0
    assert not (out / "downloads").exists()  # read where it lies in the store
    assert (last.stat().st_mtime_ns, last.read_bytes()) == before  # and never written


def test_keep_checkpoints_keeps_the_last_two_and_the_best_and_resume_continues(
    tmp_path: Path, mlflow_uri: str
) -> None:
    out = tmp_path / "outputs"
    first = run_train(settings(4, keep=2), output_dir=out)
    run_id = first.run_id
    client = MlflowClient()
    ious = {m.step // 20: m.value for m in client.get_metric_history(run_id, "epoch_iou")}
    assert sorted(ious) == [1, 2, 3, 4]
    best = max(ious, key=lambda e: (ious[e], e))
    expected = {f"epoch_{e}.ckpt" for e in {3, 4, best}}
    assert checkpoint_names(run_id) == expected
    assert client.get_run(run_id).data.params["keep_checkpoints"] == "2"
    store = local_artifact_dir(client.get_run(run_id).info.artifact_uri)
    assert sorted(p.name for p in epoch_ckpt_files(store)) == sorted(expected)
    assert epoch_ckpt_files(out) == []

    resumed = run_train(settings(5, keep=2), resume=run_id, given={"epochs": 5}, output_dir=out)
    assert resumed.run_id == run_id
    assert torch.load(resumed.outcome.checkpoint, weights_only=True)["epoch"] == 5
    ious = {m.step // 20: m.value for m in client.get_metric_history(run_id, "epoch_iou")}
    assert sorted(ious) == [1, 2, 3, 4, 5]  # the earlier epochs' IoUs still count for the best
    best = max(ious, key=lambda e: (ious[e], e))
    assert checkpoint_names(run_id) == {f"epoch_{e}.ckpt" for e in {4, 5, best}}
    assert not (out / "downloads").exists()  # resume read the run's last checkpoint in place
