"""The train step's MLflow callbacks, over a stub store: what a crash right after a checkpoint upload
leaves in the run (the e2e story is tests/e2e/test_crash_resume.py)."""

from __future__ import annotations

import time
from pathlib import Path

from stub_client import StubClient

from seqtrack_mlflow.steps.train import MlflowCallbacks
from seqtrack_mlflow.tracking import Health, RunLogger

RUN = "0123456789abcdef0123456789abcdef"


class SlowMetricsClient(StubClient):
    """A store that takes a while to take a batch of metrics (a busy server): the sender thread is
    still shipping the epoch's metrics when the checkpoint is ready."""

    def log_batch(self, run_id: str, metrics=(), params=(), tags=()) -> None:
        time.sleep(0.5)
        super().log_batch(run_id, metrics, params, tags)


def test_a_checkpoint_reaches_the_store_only_after_its_epochs_metrics(tmp_path: Path) -> None:
    client = SlowMetricsClient()
    logger = RunLogger(RUN, tmp_path, client=client, health=Health(store=lambda: "http://stub:5000"))
    log_path, ckpt = tmp_path / "train.log", tmp_path / "epoch_1.ckpt"
    log_path.write_text("Epoch 1 done\n")
    ckpt.write_bytes(b"weights")
    callbacks = MlflowCallbacks(logger, log_path)
    callbacks.on_epoch_end(1, {"epoch_loss": 0.5, "epoch_iou": 0.25}, step=100)
    callbacks.on_checkpoint(ckpt, 1)
    # What a SIGKILL at this moment leaves in the store: the checkpoint and, before it, its metrics.
    kinds = [entry[0] for entry in client.sent]
    assert kinds[: kinds.index("artifact")] == ["metrics"], client.sent
    assert ("epoch_loss", 0.5, 100) in client.metrics
    logger.finish()
