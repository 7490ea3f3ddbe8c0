"""How the trainer reports: a small callback interface, so the loop runs (and is tested) without MLflow.

`steps/train.py` implements it over the MLflow run; a test or a notebook can pass its own, or none.
"""

from __future__ import annotations

from pathlib import Path

from seqtrack_mlflow.train.progress import Report


class TrainerCallbacks:
    """No-op defaults; override what you need. Called on the main process only (DDP rank 0)."""

    def on_report(self, report: Report) -> None:
        """Every `log_every` samples, after the report lines were written."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, float], step: int) -> None:
        """After each epoch: epoch_loss, epoch_iou, lr (base rate), lr_encoder; step = samples seen."""

    def on_checkpoint(self, path: Path, epoch: int) -> None:
        """After `checkpoints/epoch_N.ckpt` was written (atomically) and the training log appended."""


class Chain(TrainerCallbacks):
    """Several callbacks in order (the tracking run's first, then e.g. a sweep's pruning)."""

    def __init__(self, *callbacks: TrainerCallbacks):
        self.callbacks = callbacks

    def on_report(self, report: Report) -> None:
        for c in self.callbacks:
            c.on_report(report)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float], step: int) -> None:
        for c in self.callbacks:
            c.on_epoch_end(epoch, metrics, step)

    def on_checkpoint(self, path: Path, epoch: int) -> None:
        for c in self.callbacks:
            c.on_checkpoint(path, epoch)
