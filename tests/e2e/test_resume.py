"""Exact resume: 2 epochs + resume to 4 equals 4 uninterrupted epochs, in the same MLflow run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from factories import small_settings
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.config import ConfigError
from seqtrack_mlflow.steps.train import run_train
from seqtrack_mlflow.tracking.registry import run_model_id
from seqtrack_mlflow.train.callbacks import TrainerCallbacks
from seqtrack_mlflow.train.checkpoints import CheckpointError


def test_resume_from_run_id_matches_uninterrupted_run(tmp_path: Path, mlflow_uri: str) -> None:
    full = run_train(small_settings(4), output_dir=tmp_path / "full")
    first = run_train(small_settings(2), output_dir=tmp_path / "part")
    resumed = run_train(
        small_settings(4), resume=first.run_id, given={"epochs": 4}, output_dir=tmp_path / "part"
    )

    assert resumed.run_id == first.run_id  # the same MLflow run goes on
    a = torch.load(full.outcome.checkpoint, weights_only=True)["model_state_dict"]
    b = torch.load(resumed.outcome.checkpoint, weights_only=True)["model_state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"

    client = MlflowClient()
    names = sorted(f.path for f in client.list_artifacts(first.run_id, "checkpoints"))
    assert names == [f"checkpoints/epoch_{i}.ckpt" for i in range(1, 5)]
    steps = [m.step for m in client.get_metric_history(first.run_id, "loss")]
    assert steps == [10, 20, 30, 40, 50, 60, 70, 80]
    log = (resumed.out_dir / "training_log.txt").read_text()
    assert log.count("Epoch 1 : 20 / 20") == 1 and log.count("Epoch 4 : 20 / 20") == 1


def test_resume_from_checkpoint_file_starts_a_new_run(tmp_path: Path, mlflow_uri: str) -> None:
    first = run_train(small_settings(1), output_dir=tmp_path)
    resumed = run_train(
        small_settings(2), resume=str(first.outcome.checkpoint), given={"epochs": 2}, output_dir=tmp_path
    )
    assert resumed.run_id != first.run_id
    assert torch.load(resumed.outcome.checkpoint, weights_only=True)["epoch"] == 2
    tags = MlflowClient().get_run(resumed.run_id).data.tags
    assert tags["seqtrack.resumed_from"] == str(first.outcome.checkpoint)


def test_missing_resume_target_fails_before_any_work(tmp_path: Path, mlflow_uri: str) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        run_train(
            dataclasses.replace(small_settings(1)),
            resume="runs:/" + "a" * 32 + "/checkpoints/epoch_1.ckpt",
            output_dir=tmp_path,
        )
    assert not (tmp_path / "outputs").exists()
    assert MlflowClient().search_runs(experiment_ids=["0"]) == []


def test_resume_with_conflicting_settings_is_refused_with_every_difference(tmp_path: Path, mlflow_uri: str):
    first = run_train(small_settings(1), output_dir=tmp_path)
    ckpt = str(first.outcome.checkpoint)
    given = {"preset": "b256", "patch_size": 8, "lr": 0.1, "epochs": 2}
    with pytest.raises(ConfigError) as err:
        run_train(small_settings(2), resume=ckpt, given=given, output_dir=tmp_path)
    message = str(err.value)
    assert "\n" not in message
    for part in (
        "preset='b256' (checkpoint: 'tiny')",
        "patch_size=8 (checkpoint: 16)",
        "lr=0.1 (checkpoint: 0.0005)",
    ):
        assert part in message, message
    with pytest.raises(ConfigError, match="nothing to train: the checkpoint is at epoch 1 and epochs=1"):
        run_train(small_settings(1), resume=ckpt, given={"epochs": 1}, output_dir=tmp_path)
    with pytest.raises(ConfigError, match="nothing to train"):
        run_train(small_settings(1), resume=ckpt, given={}, output_dir=tmp_path)  # the checkpoint's epochs
    assert len(MlflowClient().search_runs(experiment_ids=["0"])) == 1  # refused before any run started


def test_resume_applies_the_settings_it_may_change(tmp_path: Path, mlflow_uri: str) -> None:
    first = run_train(small_settings(1), output_dir=tmp_path)
    resumed = run_train(
        small_settings(2),
        resume=first.run_id,
        given={"epochs": 2, "log_every": 20, "lr_gamma": 0.5, "seed": 8, "preset": "tiny"},
        output_dir=tmp_path,
    )
    assert resumed.run_id == first.run_id and resumed.settings.train.log_every == 20
    params = MlflowClient().get_run(first.run_id).data.params
    assert params["log_every"] == "10" and params["resumed.log_every"] == "20"
    assert params["resumed.epochs"] == "2" and params["resumed.lr_gamma"] == "0.5"
    steps = [m.step for m in MlflowClient().get_metric_history(first.run_id, "loss")]
    assert steps == [10, 20, 40]  # epoch 2 reports every 20 samples, no step twice


def test_a_second_process_continuing_the_same_run_is_refused(tmp_path: Path, mlflow_uri: str) -> None:
    import subprocess
    import sys
    import time

    from services import cli

    from seqtrack_mlflow.tracking import OWNER_TAG

    first = run_train(small_settings(1), output_dir=tmp_path)
    args = ["train", "--resume", first.run_id, "--epochs", "200", "--output_dir", str(tmp_path)]
    owner = subprocess.Popen([sys.executable, "-m", "seqtrack_mlflow.cli", *args], stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while OWNER_TAG not in MlflowClient().get_run(first.run_id).data.tags:
            assert owner.poll() is None and time.time() < deadline, "the first resume did not start"
            time.sleep(0.5)
        second = cli(*args)
        assert second.returncode == 2, second.stderr[-2000:]
        (line,) = [x for x in second.stderr.splitlines() if x.startswith("error: ")]
        assert f"run {first.run_id} is being continued by another process" in line
        assert "Traceback" not in second.stderr
    finally:
        owner.kill()
        owner.wait()


class KilledAfter(TrainerCallbacks):
    """Ctrl-C right after epoch `last`'s checkpoint, before the run ends (its end is still to log)."""

    def __init__(self, last: int):
        self.last = last

    def on_checkpoint(self, path: Path, epoch: int) -> None:
        if epoch == self.last:
            raise KeyboardInterrupt


def test_resume_auto_finishes_a_run_killed_after_its_last_checkpoint(tmp_path: Path, mlflow_uri: str) -> None:
    with pytest.raises(KeyboardInterrupt):
        run_train(small_settings(2), run_key="exp-9", output_dir=tmp_path, callbacks=KilledAfter(2))
    client = MlflowClient()
    (killed,) = client.search_runs(experiment_ids=["0"])
    run_id = killed.info.run_id
    assert killed.info.status == "KILLED" and run_model_id(run_id) is None
    steps = [m.step for m in client.get_metric_history(run_id, "loss")]

    done = run_train(small_settings(2), resume="auto", run_key="exp-9", output_dir=tmp_path)

    assert done.run_id == run_id and client.get_run(run_id).info.status == "FINISHED"
    assert done.outcome.epochs_done == 2 and done.checkpoint_ref == f"runs:/{run_id}/checkpoints/epoch_2.ckpt"
    names = sorted(f.path for f in client.list_artifacts(run_id, "checkpoints"))
    assert names == ["checkpoints/epoch_1.ckpt", "checkpoints/epoch_2.ckpt"]
    stored = Path(client.get_run(run_id).info.artifact_uri.removeprefix("file://")) / "checkpoints"
    assert torch.load(stored / "epoch_2.ckpt", weights_only=True)["epoch"] == 2  # read in place, kept
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == steps  # nothing trained twice
    assert run_model_id(run_id) is not None  # the tracker model the killed start never logged
    assert "training_log.txt" in {f.path for f in client.list_artifacts(run_id)}
