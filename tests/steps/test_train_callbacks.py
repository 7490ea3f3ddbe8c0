"""The train step's MLflow callbacks, over a stub store: what a crash right after a checkpoint upload
leaves in the run (the e2e story is tests/e2e/test_crash_resume.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from stub_client import StubClient

from seqtrack_mlflow.steps.train_callbacks import MlflowCallbacks
from seqtrack_mlflow.tracking import Health, RunLogger
from seqtrack_mlflow.tracking.outbox import PENDING_OPS

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


def test_with_the_store_away_checkpoints_stay_on_disk_and_wait_in_the_outbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local copy is released only after its upload: while the store is away both wait, in order,
    and the run's outbox keeps them for `sync` (which uploads, then releases: tracking/test_stored.py)."""
    monkeypatch.setenv("SEQTRACK_TRACKING_PROBE_S", "3600")
    monkeypatch.setenv("SEQTRACK_TRACKING_FINAL_WAIT_S", "0")
    client = StubClient()
    folder = tmp_path / RUN
    logger = RunLogger(RUN, folder, client=client, health=Health(store=lambda: "http://stub:5000"))
    (folder / "checkpoints").mkdir(parents=True)
    log_path = folder / "training_log.txt"
    log_path.write_text("Epoch 1 done\n")
    callbacks = MlflowCallbacks(logger, log_path, keep=1, last_name="epoch_3.ckpt")
    client.down = True
    for epoch, iou in ((1, 0.5), (2, 0.1), (3, 0.2)):
        ckpt = folder / "checkpoints" / f"epoch_{epoch}.ckpt"
        ckpt.write_bytes(b"weights")
        callbacks.on_epoch_end(epoch, {"epoch_loss": 1.0, "epoch_iou": iou}, step=epoch * 10)
        callbacks.on_checkpoint(ckpt, epoch)
    assert logger.finish() == folder.resolve()
    logger.persist("FINISHED")
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == [
        f"epoch_{e}.ckpt" for e in (1, 2, 3)
    ]
    ops = [json.loads(line) for line in (folder / PENDING_OPS).read_text().splitlines()]
    shown = [
        (op["op"], op.get("path"), op.get("names"))
        for op in ops
        if op["op"] != "artifact" or "ckpt" in op["path"]
    ]
    assert shown == [
        ("artifact", "checkpoints/epoch_1.ckpt", None),
        ("release", "checkpoints/epoch_1.ckpt", None),
        ("artifact", "checkpoints/epoch_2.ckpt", None),
        ("release", "checkpoints/epoch_2.ckpt", None),
        ("artifact", "checkpoints/epoch_3.ckpt", None),
        ("prune", "checkpoints", ["epoch_2.ckpt"]),  # keep 1: the last (3) and the best (1)
    ]  # epoch 3, the last: released only once the model is logged from it
