"""`-P keep_checkpoints=N`: the last N epoch checkpoints plus the best by epoch IoU; unset keeps all."""

from __future__ import annotations

from seqtrack_mlflow.train.retention import checkpoints_to_delete, kept_epochs


def test_unset_keeps_every_checkpoint() -> None:
    assert checkpoints_to_delete(500, {e: 0.1 for e in range(1, 501)}, None) == []


def test_the_last_n_and_the_best_by_epoch_iou() -> None:
    ious = {1: 0.2, 2: 0.7, 3: 0.4, 4: 0.5, 5: 0.3}
    assert kept_epochs(5, ious, 2) == {2, 4, 5}
    assert checkpoints_to_delete(5, ious, 2) == ["epoch_1.ckpt", "epoch_3.ckpt"]
    assert kept_epochs(5, {**ious, 5: 0.9}, 2) == {4, 5}  # the best among the last: N files only


def test_a_tie_keeps_the_later_epoch_and_nan_never_wins() -> None:
    assert kept_epochs(4, {1: 0.5, 2: 0.5, 3: float("nan"), 4: 0.1}, 1) == {2, 4}
    assert kept_epochs(3, {1: float("nan"), 2: float("nan"), 3: float("nan")}, 1) == {3}


def test_later_epochs_than_the_current_one_are_not_touched() -> None:
    """A run resumed from an earlier checkpoint: epochs after it belong to the run's older timeline until
    they are written again."""
    assert checkpoints_to_delete(2, {1: 0.1, 2: 0.2, 3: 0.9, 4: 0.8}, 1) == ["epoch_1.ckpt"]


def test_more_to_keep_than_written_deletes_nothing() -> None:
    assert checkpoints_to_delete(2, {1: 0.3, 2: 0.1}, 5) == []
