from pathlib import Path

import pytest
import torch

from seqtrack_mlflow.train import checkpoints


def test_atomic_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "checkpoints" / "epoch_1.ckpt"
    checkpoints.save_checkpoint({"epoch": 1, "w": torch.ones(3)}, target)
    before = target.read_bytes()

    class Boom:
        def __reduce__(self):  # torch.save fails half way through pickling
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        checkpoints.save_checkpoint({"epoch": 2, "bad": Boom()}, target)
    assert target.read_bytes() == before  # the old checkpoint is intact
    assert [p.name for p in target.parent.iterdir()] == ["epoch_1.ckpt"]  # no temp file left


def test_rng_state_round_trips_through_weights_only(tmp_path: Path) -> None:
    import random

    import numpy as np

    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    path = checkpoints.save_checkpoint({"rng": checkpoints.rng_state()}, tmp_path / "r.ckpt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    checkpoints.restore_rng_state(torch.load(path, weights_only=True)["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


def test_latest_epoch_is_numeric() -> None:
    names = ["checkpoints/epoch_9.ckpt", "checkpoints/epoch_10.ckpt", "checkpoints/other.txt"]
    assert checkpoints.latest_epoch_file(names) == "checkpoints/epoch_10.ckpt"
    assert checkpoints.latest_epoch_file([]) is None


def test_missing_targets_get_one_line(tmp_path: Path, mlflow_uri: str) -> None:
    for target in ("nope.ckpt", "0" * 32, "runs:/" + "0" * 32 + "/checkpoints/epoch_1.ckpt"):
        with pytest.raises(checkpoints.CheckpointError) as err:
            checkpoints.resolve_checkpoint(target, tmp_path)
        msg = str(err.value)
        assert "\n" not in msg and target in msg and "runs:/<run_id>/checkpoints/epoch_N.ckpt" in msg
