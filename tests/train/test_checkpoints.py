from pathlib import Path

import pytest
import torch

from seqtrack_mlflow.config import DataConfig, build_settings
from seqtrack_mlflow.model.references import resolve_checkpoint
from seqtrack_mlflow.train import checkpoints
from seqtrack_mlflow.train.checkpoints import Checkpoint, CheckpointError


def small_checkpoint(epoch: int = 3) -> Checkpoint:
    settings = build_settings("tiny", {"patch_size": 8}, {"seed": 8}, DataConfig(source="synthetic"))
    return Checkpoint(
        epoch=epoch,
        settings=settings,
        model_state_dict={"w": torch.arange(4.0)},
        optimizer_state_dict={"state": {}, "param_groups": []},
        scheduler_state_dict={"last_epoch": epoch},
        loss=1.5,
        iou=0.25,
        dataset_info={"source": "synthetic", "classes": ["airplane", "guitar"]},
        rng_state=checkpoints.rng_state(),
        mlflow_run_id="a" * 32,
    )


def test_atomic_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "checkpoints" / "epoch_1.ckpt"
    checkpoints.write_atomic({"epoch": 1, "w": torch.ones(3)}, target)
    before = target.read_bytes()

    class Boom:
        def __reduce__(self):  # torch.save fails half way through pickling
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        checkpoints.write_atomic({"epoch": 2, "bad": Boom()}, target)
    assert target.read_bytes() == before  # the old checkpoint is intact
    assert [p.name for p in target.parent.iterdir()] == ["epoch_1.ckpt"]  # no temp file left


def test_record_round_trips_and_keeps_the_promised_keys(tmp_path: Path) -> None:
    ckpt = small_checkpoint()
    path = checkpoints.save(ckpt, tmp_path / "epoch_3.ckpt")
    raw = torch.load(path, weights_only=True)  # what a user does with the file
    for key in (
        "epoch",
        "model_state_dict",
        "optimizer_state_dict",
        "scheduler_state_dict",
        "loss",
        "seed",
        "patch_size",
        "dataset_info",
        "timestamp",
        "rng_state",
        "config",
        "mlflow_run_id",
        "format_version",
        "digest",
    ):
        assert key in raw, key
    assert raw["seed"] == 8 and raw["patch_size"] == 8 and raw["format_version"] == checkpoints.FORMAT_VERSION
    assert "scaler_state_dict" not in raw and "num_tokens" not in raw  # nothing always-empty or duplicated
    back = checkpoints.load(path)
    assert (
        back.settings == ckpt.settings
        and back.epoch == 3
        and back.global_step == 3 * ckpt.settings.train.samples_per_epoch
    )
    assert torch.equal(back.model_state_dict["w"], ckpt.model_state_dict["w"])


def test_version_1_files_still_load(tmp_path: Path) -> None:
    raw = small_checkpoint().to_dict()
    del raw["format_version"]
    raw.update(num_tokens=768, scaler_state_dict={})  # what version 1 also held
    raw["config"]["data"].update(lasot_root="", cache_dir="")  # version 1 wrote "" for unset
    path = checkpoints.write_atomic(raw, tmp_path / "old.ckpt")
    back = checkpoints.load(path)
    assert back.format_version == 1 and back.settings.data.lasot_root is None and back.epoch == 3


def test_newer_format_and_foreign_files_are_refused_in_one_line(tmp_path: Path) -> None:
    raw = small_checkpoint().to_dict()
    raw["format_version"] = checkpoints.FORMAT_VERSION + 1
    newer = checkpoints.write_atomic(raw, tmp_path / "newer.ckpt")
    foreign = checkpoints.write_atomic({"weights": torch.ones(2)}, tmp_path / "foreign.ckpt")
    for path, message in (
        (newer, "newer than this code reads"),
        (foreign, "no epoch, config, model_state_dict"),
    ):
        with pytest.raises(CheckpointError, match=message) as err:
            checkpoints.load(path)
        assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_rng_state_round_trips_through_weights_only(tmp_path: Path) -> None:
    import random

    import numpy as np

    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    path = checkpoints.write_atomic({"rng": checkpoints.rng_state()}, tmp_path / "r.ckpt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    checkpoints.restore_rng_state(torch.load(path, weights_only=True)["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


def test_latest_epoch_is_numeric() -> None:
    names = ["checkpoints/epoch_9.ckpt", "checkpoints/epoch_10.ckpt", "checkpoints/other.txt"]
    assert checkpoints.latest_epoch_file(names) == "checkpoints/epoch_10.ckpt"
    partial = ["checkpoints/epoch_2.ckpt", "checkpoints/epoch_3_partial.ckpt"]
    assert checkpoints.latest_epoch_file(partial) == "checkpoints/epoch_3_partial.ckpt"
    assert checkpoints.latest_epoch_file([*partial, "checkpoints/epoch_3.ckpt"]) == "checkpoints/epoch_3.ckpt"
    assert checkpoints.latest_epoch_file([]) is None


def test_missing_targets_get_one_line(tmp_path: Path, mlflow_uri: str) -> None:
    for target in ("nope.ckpt", "0" * 32, "runs:/" + "0" * 32 + "/checkpoints/epoch_1.ckpt"):
        with pytest.raises(CheckpointError) as err:
            resolve_checkpoint(target, tmp_path)
        msg = str(err.value)
        assert "\n" not in msg and target in msg and "runs:/<run_id>/checkpoints/epoch_N.ckpt" in msg
