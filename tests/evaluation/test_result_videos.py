"""Evaluate's results you can watch: videos/<sequence>.gif with the tracker's box and the ground truth,
for the first `eval_videos` test sequences, logged under `videos/`; none with eval_videos=0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from seqtrack_mlflow.config import DataConfig, TrackerConfig, build_settings
from seqtrack_mlflow.evaluation.result_videos import spread
from seqtrack_mlflow.model.factory import build_model
from seqtrack_mlflow.steps.evaluate import run_evaluate
from seqtrack_mlflow.train import checkpoints
from seqtrack_mlflow.video.draw import TRACKER, TRUTH, fit


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model at 64-px crops, untrained, trained (so it says) on 2 synthetic sequences of
    airplane and bird: the test split holds one of each."""
    data = DataConfig(source="synthetic", classes="airplane,bird", synthetic_sequences=2, synthetic_frames=12)
    settings = build_settings("tiny", {"search_size": 64, "template_size": 64}, {"seed": 3}, data)
    torch.manual_seed(0)
    ckpt = checkpoints.Checkpoint(
        epoch=1,
        settings=settings,
        model_state_dict=build_model(settings.model).state_dict(),
        optimizer_state_dict={},
        scheduler_state_dict={},
        loss=1.0,
        iou=0.0,
        dataset_info={"source": "synthetic", "classes": ["airplane", "bird"]},
        rng_state=checkpoints.rng_state(),
        mlflow_run_id="d" * 32,
    )
    return checkpoints.save(ckpt, tmp_path_factory.mktemp("ckpt") / "epoch_1.ckpt")


def close_to(image: np.ndarray, colour: tuple[int, int, int], tolerance: int = 60) -> np.ndarray:
    return np.abs(image.astype(int) - np.array(colour)).sum(axis=-1) < tolerance


def test_the_first_sequences_become_gifs_with_both_boxes(
    small_checkpoint: Path, tmp_path: Path, mlflow_uri: str
) -> None:
    result = run_evaluate(
        str(small_checkpoint),
        TrackerConfig(max_frames=6, eval_videos=1),
        device="cpu",
        output_dir=tmp_path / "out",
    )
    first = result.per_sequence[0]["sequence"]
    assert [p.name for p in (result.out_dir / "videos").iterdir()] == [f"{first}.gif"]  # capped at 1
    artifacts = MlflowClient().list_artifacts(result.run_id, "videos")
    assert [a.path for a in artifacts] == [f"videos/{first}.gif"]

    gif = Image.open(result.out_dir / "videos" / f"{first}.gif")
    assert gif.n_frames == 6 and max(gif.size) <= 240  # every tracked frame, downscaled
    seq_dir = next((tmp_path / "cache").rglob(f"{first}/img"))
    truth = np.loadtxt(seq_dir.parent / "groundtruth.txt", delimiter=",")
    plain, scale = fit(Image.open(seq_dir / "00000001.jpg").convert("RGB"), 240)
    # Frame 1: the ground truth's outline (drawn over the tracker's, which starts on it) in blue.
    x, y, w, h = np.round(truth[0] * scale).astype(int)
    frame = np.asarray(gif.convert("RGB"))
    assert close_to(frame[y, x + 2 : x + w - 2], TRUTH).mean() > 0.8
    assert close_to(np.asarray(plain)[y, x + 2 : x + w - 2], TRUTH).mean() < 0.2  # drawn, not there before
    # The last frame: the tracker's box in orange where the plain frame has none.
    gif.seek(gif.n_frames - 1)
    last = np.asarray(gif.convert("RGB"))
    plain_last, _ = fit(Image.open(seq_dir / "00000006.jpg").convert("RGB"), 240)
    assert close_to(last, TRACKER).sum() > close_to(np.asarray(plain_last), TRACKER).sum() + 20


def test_eval_videos_0_writes_none(small_checkpoint: Path, tmp_path: Path, mlflow_uri: str) -> None:
    result = run_evaluate(
        str(small_checkpoint), TrackerConfig(max_frames=3, eval_videos=0), device="cpu", output_dir=tmp_path
    )
    assert not (result.out_dir / "videos").exists()
    assert MlflowClient().list_artifacts(result.run_id, "videos") == []
    assert MlflowClient().get_run(result.run_id).data.params["eval_videos"] == "0"


def test_eval_videos_defaults_to_two_and_refuses_negative() -> None:
    from seqtrack_mlflow.config import ConfigError

    assert TrackerConfig().eval_videos == 2
    with pytest.raises(ConfigError, match="eval_videos=-1 is invalid: use 0"):
        TrackerConfig(eval_videos=-1).validate()


def test_spread_keeps_first_and_last() -> None:
    assert spread(5, 32) == [0, 1, 2, 3, 4]
    picks = spread(1000, 32)
    assert len(picks) == 32 and picks[0] == 0 and picks[-1] == 999
