"""Bad frames during training: how many sample draws an epoch may skip for undecodable frames, and the
counter that warns once per bad file and stops the run past the limit (`sampling.py` explains the rule:
one process may skip max(SKIP_LIMIT_MIN, SKIP_LIMIT_FRACTION x its share) draws an epoch)."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

from seqtrack_mlflow.datasets.base import DatasetFormatError

MAX_DRAWS = 10  # draws per sample hitting undecodable frames before training stops
SKIP_LIMIT_MIN = 10  # skipped draws an epoch may have on one process, at least ...
SKIP_LIMIT_FRACTION = 0.01  # ... or this fraction of the process's share of the epoch


class BadFramesError(DatasetFormatError):
    """Training met more undecodable frames than the documented limit: one line naming the last one."""


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class SkipCounter:
    """One epoch's skipped draws on one process: warns once per bad file and stops past the limit.

    `update(batch)` removes the bookkeeping keys (`skipped`, `bad_frame`, `failed`) from a collated
    batch, leaving only the tensors the model takes.
    """

    def __init__(self, epoch: int, share: int, warn: Callable[[str], None] = _warn) -> None:
        self.epoch = epoch
        self.limit = max(SKIP_LIMIT_MIN, math.floor(SKIP_LIMIT_FRACTION * share))
        self.count = 0
        self.last = ""  # the last bad frame's message
        self.warned: set[str] = set()
        self.warn = warn

    def update(self, batch: dict) -> None:
        skipped = batch.pop("skipped", None)
        bad_frames = batch.pop("bad_frame", ())
        failed = batch.pop("failed", None)
        if skipped is None:
            return
        self.count += int(skipped.sum())
        messages = [m for m in bad_frames if m]
        for message in messages:
            if message not in self.warned:
                self.warned.add(message)
                self.warn(f"warning: skipped a training sample of epoch {self.epoch}: {message}")
        self.last = messages[-1] if messages else self.last
        last = self.last
        if failed is not None and bool(failed.any()):
            raise BadFramesError(
                f"a training sample of epoch {self.epoch} found no decodable frames in {MAX_DRAWS} draws, "
                f"the last {last}; find every bad frame with select_data -P verify_frames=true"
            )
        if self.count > self.limit:
            raise BadFramesError(
                f"epoch {self.epoch} skipped {self.count} training samples for undecodable frames, over "
                f"the limit of {self.limit} (max({SKIP_LIMIT_MIN}, {SKIP_LIMIT_FRACTION:.0%} of the "
                f"epoch)), the last {last}; find every bad frame with select_data -P verify_frames=true"
            )


__all__ = ["MAX_DRAWS", "SKIP_LIMIT_FRACTION", "SKIP_LIMIT_MIN", "BadFramesError", "SkipCounter"]
