"""Which epoch checkpoints a run keeps (`-P keep_checkpoints=N`): the last N plus the best by epoch IoU.

The official recipe trains 500 epochs; with the optimiser state a checkpoint of the b256 model is over
1 GB, so keeping every one costs 500+ GB. The latest checkpoint is always kept (resume reads it), and so
is the one with the highest `epoch_iou` (the mean IoU of the epoch's predicted boxes, the metric the
trainer logs per epoch). Partial checkpoints (`epoch_N_partial.ckpt`, written on a signal) are not
counted and never removed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from seqtrack_mlflow.train.checkpoints import checkpoint_name


def kept_epochs(epoch: int, ious: Mapping[int, float], keep: int) -> set[int]:
    """The epochs up to `epoch` whose checkpoints stay: the last `keep`, and the best by IoU (a tie goes
    to the later epoch; NaN IoUs never win)."""
    kept = set(range(max(1, epoch - keep + 1), epoch + 1))
    known = {e: v for e, v in ious.items() if 1 <= e <= epoch and not math.isnan(v)}
    if known:
        kept.add(max(known, key=lambda e: (known[e], e)))
    return kept


def checkpoints_to_delete(epoch: int, ious: Mapping[int, float], keep: int | None) -> list[str]:
    """The names of the `epoch_N.ckpt` files up to `epoch` that the rule no longer keeps ([] for
    keep=None: all are kept). Later epochs (a run resumed from an earlier checkpoint) are not touched."""
    if keep is None:
        return []
    kept = kept_epochs(epoch, ious, keep)
    return [checkpoint_name(e) for e in range(1, epoch + 1) if e not in kept]


__all__ = ["checkpoints_to_delete", "kept_epochs"]
