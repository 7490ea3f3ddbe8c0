"""The tracker as a served model, without MLflow (`evaluation/predict.py`): a request of base64 JPEG frames
or a real H.264 file gets the boxes and scores of evaluate's tracker on the same decoded frames, with the
tracker settings of the model config; every bad request is one line naming the field and the fix."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from factories import decoded
from PIL import Image

from seqtrack_mlflow.config import ConfigError, TrackerConfig
from seqtrack_mlflow.evaluation.predict import (
    COLUMNS,
    PredictInputError,
    example_request,
    load_tracker,
    model_config,
    settings_from_params,
    track_request,
    tracker_config,
)
from seqtrack_mlflow.evaluation.tracker import SeqTrackTracker
from seqtrack_mlflow.train import checkpoints

# Template 2 replaced every 2nd frame: the update path is part of what must match.
UPDATING = TrackerConfig(update_interval=2, update_threshold=0.0)


def jpeg_b64(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def png_b64(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def from_b64(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB"))


def evaluate_tracker(ckpt: Path, frames: list[np.ndarray], box: list[float], cfg: TrackerConfig):
    """Evaluate's tracker as evaluate and track drive it (initialize, then track frame by frame)."""
    loaded = checkpoints.load(ckpt)
    tracker = SeqTrackTracker.from_weights(loaded.settings.model, loaded.model_state_dict, cfg)
    tracker.initialize(frames[0], box)
    found = [tracker.track(f) for f in frames[1:]]
    boxes = np.array([box] + [b for b, _ in found])
    return boxes, [s for _, s in found], list(tracker.updates)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A batch of one on 64-px crops: on a shared 2-core machine a second OpenMP thread only adds
    contention (0.5 s a frame instead of 10 ms when another process runs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tracker(tiny_ckpt: Path) -> SeqTrackTracker:
    return load_tracker(tiny_ckpt, model_config(UPDATING), device="cpu")


@pytest.fixture(scope="module")
def box(sequence) -> list[float]:
    return [float(v) for v in sequence[1].split(",")]


def check_rows(table: pd.DataFrame, boxes: np.ndarray, scores: list[float]) -> None:
    assert list(table.columns) == list(COLUMNS)
    assert table["frame"].tolist() == list(range(len(boxes)))
    np.testing.assert_allclose(table[list("xywh")].to_numpy(), boxes, rtol=0, atol=1e-6)
    assert table["confidence"].iloc[0] is None  # frame 0: the box given (boxes.csv leaves it empty)
    np.testing.assert_allclose(table["confidence"].iloc[1:].astype(float), scores, rtol=0, atol=1e-6)


def test_base64_jpeg_frames_get_the_evaluate_trackers_boxes(tracker, tiny_ckpt: Path, sequence, box) -> None:
    sent = [jpeg_b64(f) for f in sequence[0]]
    boxes, scores, updates = evaluate_tracker(tiny_ckpt, [from_b64(t) for t in sent], box, UPDATING)
    assert updates == [2, 4, 6, 8]  # the model config's update interval is in force
    check_rows(track_request(tracker, {"frames": sent, "box": box}), boxes, scores)
    # A one-row DataFrame (MLflow's serving form), integer box, PNG frames: the same tracker.
    pngs = [png_b64(f) for f in sequence[0][:4]]
    int_box = [round(v) for v in box]
    boxes, scores, _ = evaluate_tracker(tiny_ckpt, sequence[0][:4], int_box, UPDATING)
    table = track_request(tracker, pd.DataFrame([{"frames": pngs, "box": int_box}]))
    check_rows(table, boxes, scores)


def test_a_video_file_gets_the_evaluate_trackers_boxes(tracker, tiny_ckpt: Path, clip: Path, box) -> None:
    boxes, scores, _ = evaluate_tracker(tiny_ckpt, decoded(clip), box, UPDATING)
    check_rows(track_request(tracker, {"video": str(clip), "box": ",".join(map(str, box))}), boxes, scores)


def test_the_input_example_is_tracked(tracker) -> None:
    table = track_request(tracker, example_request())
    assert table["frame"].tolist() == [0, 1] and table["confidence"].iloc[1] > 0


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"frames": ["F0"]}, 'the request has no box: give "box": [x, y, w, h]'),
        ({"frames": ["F0"], "box": [1, 2, 3]}, 'box=[1, 2, 3] is invalid: give "box": [x, y, w, h]'),
        ({"frames": ["F0"], "box": "a,b,c,d"}, "box='a,b,c,d' is invalid"),
        ({"frames": ["F0"], "box": [1, 2, 0, 4]}, "box=[1, 2, 0, 4] is invalid"),
        ({"frames": ["F0"], "box": [150, 100, 40, 40]}, "lies outside the first frame (frames[0], 162x122"),
        ({"frames": ["F0", "not base64!"], "box": [10, 10, 20, 20]}, "frames[1] is not base64 text: send"),
        ({"frames": ["F0", "TEXT"], "box": [10, 10, 20, 20]}, "frames[1] is not a JPEG or PNG image"),
        ({"frames": ["F0", "SMALL"], "box": [10, 10, 20, 20]}, "frames[1] is 80x60, frames[0] 162x122"),
        ({"frames": [], "box": [10, 10, 20, 20]}, "frames=[] is not a non-empty list"),
        ({"video": "missing.mp4", "box": [1, 1, 5, 5]}, "video=missing.mp4: no such file or folder"),
        ({"video": "v.mp4", "frames": ["F0"], "box": [1, 1, 5, 5]}, "has both a video and frames: send"),
        ({"box": [1, 1, 5, 5]}, "has neither a video nor frames: send"),
        ({"frame": ["F0"], "box": [1, 1, 5, 5]}, "unknown fields ['frame']"),
        ("DF2", "the request has 2 rows: track one target at a time"),
    ],
)
def test_bad_requests_are_one_line_naming_the_fix(tracker, sequence, request_, message: str) -> None:
    first = jpeg_b64(sequence[0][0])
    text = base64.b64encode(b"a text file, not an image").decode()
    small = jpeg_b64(np.zeros((60, 80, 3), np.uint8))
    swap = {"F0": first, "TEXT": text, "SMALL": small}
    if request_ == "DF2":
        request_ = pd.DataFrame([{"frames": [first], "box": [1, 1, 5, 5]}] * 2)
    else:
        request_ = {k: [swap.get(f, f) for f in v] if k == "frames" else v for k, v in request_.items()}
    with pytest.raises(PredictInputError) as caught:
        track_request(tracker, request_)
    assert message in str(caught.value) and "\n" not in str(caught.value), str(caught.value)


def test_the_model_config_is_spelled_as_every_run_logs_its_settings() -> None:
    """MLflow logs a model's config as params of its run: in the canonical spelling, the train run's
    `window_penalty` reads `true` as in evaluate and main, and the config reads back to the same tracker."""
    config = model_config(UPDATING)
    assert config["window_penalty"] == "true" and config["update_interval"] == "2"
    assert config["update_threshold"] == "0.0" and config["eval_precision"] == "fp32"
    assert tracker_config(config) == UPDATING.resolved() == settings_from_params(config)
    # Given at load time: typed values, or as MLflow logged a user's -P value.
    assert tracker_config({**config, "window_penalty": False}).window_penalty is False
    assert tracker_config({**config, "window_penalty": "False"}).window_penalty is False
    with pytest.raises(ConfigError, match="window_penalty"):
        tracker_config({**config, "window_penalty": "maybe"})
    assert settings_from_params({**config, "update_interval": "often"}) is None
