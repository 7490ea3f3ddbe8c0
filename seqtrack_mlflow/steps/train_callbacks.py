"""The train step's trainer callbacks: reports, epoch summaries and checkpoints sent to the MLflow run,
with the local copies released and old checkpoints pruned (-P keep_checkpoints)."""

from __future__ import annotations

from pathlib import Path

from seqtrack_mlflow.tracking import RunLogger
from seqtrack_mlflow.train import checkpoints
from seqtrack_mlflow.train.callbacks import TrainerCallbacks
from seqtrack_mlflow.train.progress import Report, report_metrics
from seqtrack_mlflow.train.retention import checkpoints_to_delete

CHECKPOINT_FLUSH_S = 60.0  # a slow store delays the upload at most this long; an absent one not at all


class MlflowCallbacks(TrainerCallbacks):
    """The trainer's reports, epoch summaries and checkpoints, sent to the run.

    A run continued after a crash re-trains the part of an epoch after its last checkpoint: steps the
    run already holds (`after_step`, `after_epoch_step`) are not logged twice. Each uploaded checkpoint's
    local copy is released (removed once a local artifact store holds it; the last one after the model
    is logged from it), and with `keep` (-P keep_checkpoints) the checkpoints `retention` no longer keeps
    are pruned; `ious`: the epoch IoUs so far (a resumed run's, from its checkpoint's history)."""

    def __init__(
        self,
        logger: RunLogger,
        log_path: Path,
        after_step: int = -1,
        after_epoch_step: int = -1,
        *,
        keep: int | None = None,
        last_name: str = "",
        ious: dict[int, float] | None = None,
    ):
        self.logger, self.log_path = logger, log_path
        self.after_step, self.after_epoch_step = after_step, after_epoch_step
        self.keep, self.last_name, self.ious = keep, last_name, dict(ious or {})

    def on_report(self, report: Report) -> None:
        if report.global_step > self.after_step:
            self.logger.log_metrics(report_metrics(report), step=report.global_step)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float], step: int) -> None:
        self.ious[epoch] = metrics["epoch_iou"]
        if step > self.after_epoch_step:
            self.logger.log_metrics(metrics, step=step)

    def on_checkpoint(self, path: Path, epoch: int) -> None:
        # Metrics first: a checkpoint in the store then implies its epoch's metrics are there too, so a
        # run killed right after the upload (SIGKILL, OOM) and resumed from it has no hole in its curves.
        self.logger.flush(timeout=CHECKPOINT_FLUSH_S)
        self.logger.log_artifact(path, checkpoints.CHECKPOINT_DIR)
        self.logger.log_artifact(self.log_path)
        if path.name != self.last_name:  # the last one: released once the model is logged from it
            self.logger.release(path, checkpoints.CHECKPOINT_DIR)
        doomed = checkpoints_to_delete(epoch, self.ious, self.keep)
        self.logger.prune(doomed, checkpoints.CHECKPOINT_DIR, path.parent)
