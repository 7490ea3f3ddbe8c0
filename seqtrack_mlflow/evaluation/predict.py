"""The tracker as a served model, without MLflow: a request (a video, or frames sent as base64 JPEG/PNG,
and the target's first box) -> the evaluate tracker on every frame -> one row per frame.

A request is a dict or a one-row pandas DataFrame (what MLflow's serving hands a model):

    {"video": "<video file or folder of frames on this machine>", "box": [x, y, w, h]}
    {"frames": ["<base64 JPEG or PNG>", ...], "box": [x, y, w, h]}

The answer has the columns of track's boxes.csv without its times: frame (from 0), x, y, w, h (pixels)
and confidence (the tracker's score, 10 x the sum of the four box tokens' probabilities; None for frame
0, the box given, as boxes.csv leaves it empty). The tracker is evaluate's and track's, with the same
`TrackerConfig`; each request has a state of its own (`SeqTrackTracker.start` / `step`), so concurrent
requests share the model and nothing else. A request that cannot be tracked raises `PredictInputError`:
one line naming the field and the fix. `tracking/tracker_model.py` wraps this as an MLflow pyfunc model.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import io
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from seqtrack_mlflow.config import ConfigError, TrackerConfig
from seqtrack_mlflow.config.declare import fields_of
from seqtrack_mlflow.config.spelling import canonical, parsed
from seqtrack_mlflow.config.video import valid_box
from seqtrack_mlflow.datasets.base import DECODE_ERRORS
from seqtrack_mlflow.evaluation.tracker import SeqTrackTracker
from seqtrack_mlflow.model.factory import load_trained_weights
from seqtrack_mlflow.model.precision import check_precision
from seqtrack_mlflow.train.distributed import pick_device
from seqtrack_mlflow.video.source import VideoError, open_video

COLUMNS = ("frame", "x", "y", "w", "h", "confidence")
# The TrackerConfig values a logged model keeps: those that decide the boxes. Evaluation's own (split,
# eval_batch, eval_videos) and max_frames (a request tracks every frame it names) are not the model's.
MODEL_SETTINGS = (
    "eval_search_factor",
    "eval_template_factor",
    "window_penalty",
    "update_interval",
    "update_threshold",
    "eval_precision",
)
BOX_FIX = 'give "box": [x, y, w, h], 4 numbers in pixels of the first frame with w > 0 and h > 0'
REQUEST_FIX = (
    'send {"video": "<video file or folder of frames>", "box": [x, y, w, h]} or '
    '{"frames": ["<base64 JPEG or PNG>", ...], "box": [x, y, w, h]}'
)


class PredictInputError(ValueError):
    """A request the tracker cannot follow: one line naming the field and the fix."""


@dataclass(frozen=True)
class TrackRequest:
    box: tuple[float, float, float, float]
    video: str | None = None
    frames: tuple[str, ...] = ()


# -- the model's settings ---------------------------------------------------------------------------


def model_config(cfg: TrackerConfig) -> dict[str, str]:
    """The tracker settings a logged model keeps (its MLflow model config), the update interval resolved
    (unset = the benchmark's official one): a served model tracks with the numbers it was scored with.
    In their canonical spelling (`config.spelling`): MLflow logs a model's config as params of its run,
    and these must read as every other run's (`window_penalty=true`, not `True`)."""
    values = dataclasses.asdict(cfg.resolved())
    return {name: canonical(values[name]) for name in MODEL_SETTINGS}


def tracker_config(values: Mapping[str, Any]) -> TrackerConfig:
    """The TrackerConfig of a model config (defaults for keys it lacks), checked. Values may be typed
    (given at load time) or spelled (as `model_config` writes them)."""
    kinds = {f.name: kind for f, kind in fields_of(TrackerConfig)}
    try:
        given = {
            k: parsed(v, kinds[k]) if isinstance(v, str) else v
            for k, v in values.items()
            if k in MODEL_SETTINGS
        }
        cfg = TrackerConfig(**given)
        cfg.validate()
        cfg = cfg.resolved()
    except (TypeError, ValueError, ConfigError) as exc:
        raise ConfigError(
            f"the model config {dict(values)} is unusable ({exc}): fix the value given at load time"
        ) from None
    return cfg


def settings_from_params(params: Mapping[str, str]) -> TrackerConfig | None:
    """The tracker settings of a run whose model was logged before (MLflow records a model's config as
    params of its run), or None where the run holds them not: a resumed run logs its model again with
    them."""
    if not all(name in params for name in MODEL_SETTINGS):
        return None
    kinds = {f.name: kind for f, kind in fields_of(TrackerConfig)}
    try:
        values = {name: parsed(params[name], kinds[name]) for name in MODEL_SETTINGS}
    except ValueError:
        return None
    return tracker_config(values)


def load_tracker(checkpoint: Path, config: Mapping[str, Any], device: str = "auto") -> SeqTrackTracker:
    """The evaluate tracker for a checkpoint file and a model config, on `device` (auto: CUDA if any)."""
    cfg = tracker_config(config)
    torch_device = pick_device(device)
    check_precision(cfg.eval_precision, torch_device)
    trained = load_trained_weights(checkpoint, None)
    return SeqTrackTracker.from_weights(trained.model, trained.state_dict, cfg, torch_device)


# -- reading a request ----------------------------------------------------------------------------


def _fields(model_input: Any) -> dict[str, Any]:
    """The request's fields: a dict as given, a one-row DataFrame's row (absent or NaN cells dropped)."""
    if isinstance(model_input, pd.DataFrame):
        if len(model_input) != 1:
            raise PredictInputError(
                f"the request has {len(model_input)} rows: track one target at a time, {REQUEST_FIX}"
            )
        row = model_input.iloc[0].to_dict()
        return {k: v for k, v in row.items() if not _missing(v)}
    if isinstance(model_input, Mapping):
        return {k: v for k, v in model_input.items() if not _missing(v)}
    raise PredictInputError(f"the request is a {type(model_input).__name__}: {REQUEST_FIX}")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def parse_box(value: Any) -> tuple[float, float, float, float]:
    """[x, y, w, h] (a list, array or "x,y,w,h" text) -> 4 floats, or one PredictInputError line."""
    parts = value.split(",") if isinstance(value, str) else value
    parts = parts.tolist() if isinstance(parts, np.ndarray) else parts
    try:
        box = valid_box([float(v) for v in parts]) if isinstance(parts, (list, tuple)) else None
    except (TypeError, ValueError):
        box = None
    if box is None:
        raise PredictInputError(f"box={_shown(value)} is invalid: {BOX_FIX}")
    return box


def parse_request(model_input: Any) -> TrackRequest:
    """Check a request's fields (not its frames yet): a box, and a video or frames, not both."""
    fields = _fields(model_input)
    unknown = sorted(set(fields) - {"video", "frames", "box"})
    if unknown:
        raise PredictInputError(f"the request has unknown fields {unknown}: {REQUEST_FIX}")
    if "box" not in fields:
        raise PredictInputError(f"the request has no box: {BOX_FIX}")
    box = parse_box(fields["box"])
    video, frames = fields.get("video"), fields.get("frames")
    if (video is None) == (frames is None):
        which = "both a video and frames" if video is not None else "neither a video nor frames"
        raise PredictInputError(f"the request has {which}: {REQUEST_FIX}")
    if video is not None:
        if not isinstance(video, str) or not video.strip():
            raise PredictInputError(f"video={_shown(video)} is not a path: {REQUEST_FIX}")
        return TrackRequest(box, video=video)
    if isinstance(frames, str) or not hasattr(frames, "__len__") or len(frames) == 0:
        raise PredictInputError(f"frames={_shown(frames)} is not a non-empty list: {REQUEST_FIX}")
    return TrackRequest(box, frames=tuple(frames))


def decode_frame(text: Any, index: int) -> np.ndarray:
    """frames[index], base64 of a JPEG or PNG file (a data: URL prefix is accepted) -> HxWx3 RGB."""
    fix = "send each frame as the base64 text of its JPEG or PNG file"
    if not isinstance(text, str):
        raise PredictInputError(f"frames[{index}] is a {type(text).__name__}, not text: {fix}")
    try:
        data = base64.b64decode(text.split(",", 1)[1] if text.startswith("data:") else text, validate=True)
    except (binascii.Error, ValueError):
        raise PredictInputError(f"frames[{index}] is not base64 text: {fix}") from None
    try:
        with Image.open(io.BytesIO(data)) as img:
            kind = img.format
            image = np.asarray(img.convert("RGB")) if kind in ("JPEG", "PNG") else None
    except DECODE_ERRORS:
        raise PredictInputError(f"frames[{index}] is not a JPEG or PNG image that decodes: {fix}") from None
    if image is None:
        raise PredictInputError(f"frames[{index}] is a {kind} image: {fix}")
    return image


@contextlib.contextmanager
def request_frames(request: TrackRequest) -> Iterator[Iterator[np.ndarray]]:
    """The request's frames, decoded one at a time, all of one size; the first is decoded (and the box
    checked against it) before this yields, so a bad request fails before any tracking."""
    if request.video is not None:
        try:
            with open_video(Path(request.video).expanduser()) as source:
                check_inside(request.box, source.width, source.height, source.name)
                yield _video_frames(source.frames())
        except VideoError as exc:
            raise PredictInputError(str(exc)) from None
        return
    first = decode_frame(request.frames[0], 0)
    check_inside(request.box, first.shape[1], first.shape[0], "frames[0]")
    yield _sent_frames(first, request.frames)


def _video_frames(frames: Iterator[Any]) -> Iterator[np.ndarray]:
    for frame in frames:
        yield frame.image


def _sent_frames(first: np.ndarray, frames: tuple[str, ...]) -> Iterator[np.ndarray]:
    yield first
    height, width = first.shape[:2]
    for index, text in enumerate(frames[1:], start=1):
        image = decode_frame(text, index)
        if image.shape[:2] != (height, width):
            raise PredictInputError(
                f"frames[{index}] is {image.shape[1]}x{image.shape[0]}, frames[0] {width}x{height}: "
                "send frames of one size"
            )
        yield image


def check_inside(box: tuple[float, float, float, float], width: int, height: int, name: str) -> None:
    """The box must lie inside the first frame."""
    x, y, w, h = box
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise PredictInputError(
            f"box={list(box)} lies outside the first frame ({name}, {width}x{height} pixels): give x, y, "
            f"w, h with x >= 0, y >= 0, x + w <= {width}, y + h <= {height}"
        )


# -- tracking ---------------------------------------------------------------------------------------


def track_request(tracker: SeqTrackTracker, model_input: Any) -> pd.DataFrame:
    """Track a request (see the module): one row per frame, frame 0 the box given."""
    request = parse_request(model_input)
    boxes: list[np.ndarray] = []
    scores: list[float | None] = [None]  # frame 0: the box given, no score (as in boxes.csv)
    with request_frames(request) as frames:
        images = iter(frames)
        state = tracker.start(next(images), request.box)
        boxes.append(np.asarray(request.box, dtype=np.float64))
        for image in images:
            found, score = tracker.step([state], [image])[0]
            boxes.append(found)
            scores.append(float(score))
    xywh = np.array(boxes, dtype=np.float64)
    columns = {"frame": np.arange(len(xywh)), **{k: xywh[:, i] for i, k in enumerate("xywh")}}
    return pd.DataFrame({**columns, "confidence": pd.Series(scores, dtype=object)})


def example_request(size: tuple[int, int] = (64, 48), frames: int = 2) -> dict[str, Any]:
    """A small request (JPEG frames of a bright square on grey, the square's box): the logged model's
    input example, which MLflow tracks once when the model is logged."""
    width, height = size
    encoded = []
    for shift in range(frames):
        image = np.full((height, width, 3), 96, np.uint8)
        image[16:32, 20 + shift : 36 + shift] = (230, 60, 40)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=90)
        encoded.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    return {"frames": encoded, "box": [20.0, 16.0, 16.0, 16.0]}


def _shown(value: Any) -> str:
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = [
    "COLUMNS",
    "MODEL_SETTINGS",
    "PredictInputError",
    "TrackRequest",
    "decode_frame",
    "example_request",
    "load_tracker",
    "model_config",
    "parse_box",
    "parse_request",
    "settings_from_params",
    "track_request",
    "tracker_config",
]
