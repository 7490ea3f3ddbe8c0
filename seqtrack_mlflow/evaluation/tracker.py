"""SeqTrack inference: one-pass tracking with window penalty and template update, as the official tracker.

Per frame: crop the search region around the previous box, encode [search, templates], greedily
decode the 4 box tokens (cx, cy, w, h), map them back to the image, clip with a 10 px margin, and every
`update_interval` frames replace template 2 with a crop around the new box when the confidence
(official: 10 x the sum of the four chosen tokens' confidences, `tokens.choose_token`) exceeds the
threshold.

Box mapping back to the image, relative to the crop centre as in the official tracker, which computes
    c = tokens / (bins - 1) * S / r + (c_prev - 0.5 * S / r)
with S the search size and r = S / side the resize factor. We compute the exact inverse of the
training labels (`model/tokens.py`: centre (S - 1)/2 + (c - c_crop) * r, normalised by S - 1):
    c = c_crop + ((token + 0.5) / (bins - 1) * (S - 1) - (S - 1) / 2) / r
    w = (token_w + 0.5) / (bins - 1) * (S - 1) / r
so a perfect model's own labels decode to its boxes to within a quantisation step, without bias. It
departs from the official formula in three small ways: S - 1 where the official code scales by S (which
stretches offsets from the centre and sizes by S / (S - 1)); the quantisation cell's centre (+0.5 bin)
where the official code takes its lower edge; and c_crop = x0 + side / 2, the centre of the crop
actually cut (`processing.crop_window`), where the official code uses the previous box's centre before
the crop corner is rounded to whole pixels (at most half an image pixel apart).
"""

from __future__ import annotations

import functools
import io
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from seqtrack_mlflow.config import ModelConfig, TrackerConfig
from seqtrack_mlflow.datasets.base import DECODE_ERRORS, FrameError, frame_error
from seqtrack_mlflow.evaluation.runners import Runner, make_runner
from seqtrack_mlflow.inputs import jpeg
from seqtrack_mlflow.inputs.processing import (
    CropWindow,
    box_from_crop,
    crop_image,
    crop_jpeg_bytes,
    crop_window,
    normalize,
    open_frame,
)
from seqtrack_mlflow.model.factory import WeightsError, model_from_weights
from seqtrack_mlflow.model.seqtrack import SeqTrack
from seqtrack_mlflow.model.tokens import greedy_decode, hann_window, tokens_to_box

if TYPE_CHECKING:
    from seqtrack_mlflow.datasets.base import Sequence

CLIP_MARGIN = 10.0  # official clip_box margin (pixels)
SCORE_SCALE = 10.0  # official update score: 10 x the sum of the 4 chosen tokens' confidences

ImageInput = np.ndarray | str | Path


class TrackerError(ValueError):
    """Unusable tracker input (image, box, settings or checkpoint): one line naming it and the fix."""


def clip_box(box_xywh: np.ndarray, width: float, height: float, margin: float = CLIP_MARGIN) -> np.ndarray:
    """Official `clip_box`: keep at least `margin` pixels of the box inside the image.

    x1 in [0, W - margin], x2 in [margin, W] (same for y), then w, h >= margin. The result always has a
    positive size, so the next search crop is well defined even after a wild prediction.
    """
    b = np.asarray(box_xywh, dtype=np.float64)
    x1 = np.minimum(np.maximum(b[..., 0], 0.0), width - margin)
    y1 = np.minimum(np.maximum(b[..., 1], 0.0), height - margin)
    x2 = np.minimum(np.maximum(b[..., 0] + b[..., 2], margin), width)
    y2 = np.minimum(np.maximum(b[..., 1] + b[..., 3], margin), height)
    w = np.maximum(x2 - x1, margin)
    h = np.maximum(y2 - y1, margin)
    return np.stack([x1, y1, w, h], axis=-1)


def tokens_to_image_box(tokens: torch.Tensor, window: CropWindow, bins: int) -> np.ndarray:
    """(..., 4) (cx, cy, w, h) tokens of a search crop -> x, y, w, h in full-image pixels.

    The exact inverse of the training labels up to quantisation (module docstring): tokens to
    continuous crop pixels (`tokens_to_box`), then crop to image pixels (`box_from_crop`, the inverse of
    `box_to_crop`, which placed the training targets).
    """
    crop_box = tokens_to_box(torch.as_tensor(tokens), window.out_size, bins)
    return box_from_crop(crop_box.detach().cpu().double().numpy(), window)


class _Frame:
    """One frame, decoded lazily per crop: JPEG paths at reduced scale when the crop shrinks them.

    A JPEG path is read once and each crop decoded from its bytes by the region decoder
    (`inputs/jpeg.py`), PIL being the fallback (the decoder not built, or a file it refuses). A frame
    file that is missing, not an image, or fails to decode raises `_Frame.Error`: a TrackerError that
    is also a `datasets.base.FrameError`, one line naming the file (never PIL's traceback)."""

    class Error(TrackerError, FrameError):
        """An unreadable frame file given to the tracker."""

    def __init__(self, image: ImageInput) -> None:
        self._path: Path | None = None
        self._pil: Image.Image | None = None
        self._jpeg: bytes | None = None  # the file's bytes, for the region decoder
        if isinstance(image, (str, Path)):
            self._path = Path(image)
            try:
                if jpeg.decoder() == "region":
                    self._jpeg = jpeg.read_bytes(self._path)
                source = io.BytesIO(self._jpeg) if self._jpeg is not None else self._path
                with Image.open(source) as probe:  # header only: full-resolution size
                    self.size = probe.size
            except DECODE_ERRORS as exc:
                bad = frame_error(self._path, exc)
                raise _Frame.Error(bad.path, bad.reason) from None
        else:
            arr = np.asarray(image)
            if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
                raise TrackerError(
                    f"image array has shape {arr.shape} and dtype {arr.dtype}: pass an HxWx3 uint8 RGB array"
                )
            self._pil = Image.fromarray(np.ascontiguousarray(arr))
            self.size = self._pil.size

    def crop(self, window: CropWindow) -> np.ndarray:
        if self._pil is not None:
            return crop_image(self._pil, window)
        if self._jpeg is not None:
            crop = crop_jpeg_bytes(self._jpeg, window)
            if crop is not None:
                return crop
        try:
            img, scale = open_frame(self._path, window)
        except FrameError as bad:
            raise _Frame.Error(bad.path, bad.reason) from None
        return crop_image(img, window, scale)


@dataclass
class TrackState:
    """One sequence's tracking state: its templates, the previous box and the update bookkeeping."""

    templates: torch.Tensor  # (1, num_templates, 3, T, T)
    state: np.ndarray  # previous box, x, y, w, h (image pixels)
    frame_id: int = 0  # frames tracked since initialisation
    updates: list[int] = field(default_factory=list)  # frame ids at which template 2 was replaced
    last_score: float = 0.0


class SeqTrackTracker:
    """Stateful single-object tracker around a SeqTrack model.

    `initialize` / `track` follow one sequence (batch of one, as in the benchmark); `start` / `step`
    track several sequences in lockstep, one batched encode + decode per frame for all of them, each
    with its own `TrackState` (templates, box, template updates). Both go through `step`, so a sequence
    gets the same boxes alone or in a batch up to the float rounding of batched matrix products.
    The model runs behind a `Runner` (`evaluation/runners.py`): `cfg.backend` torch (the encoder at
    `cfg.eval_precision`, `model.precision`) or onnx (onnxruntime); `runner` given: that one.
    """

    def __init__(
        self,
        model: SeqTrack,
        cfg: TrackerConfig,
        device: torch.device | str = "cpu",
        use_cache: bool = True,
        runner: Runner | None = None,
    ) -> None:
        cfg = cfg.resolved()  # an unset update interval: the benchmark's official one
        if cfg.update_interval < 1:
            raise TrackerError(f"update_interval={cfg.update_interval} is invalid: use 1 or more frames")
        if cfg.eval_search_factor <= 0 or cfg.eval_template_factor <= 0:
            raise TrackerError(
                f"eval_search_factor={cfg.eval_search_factor}, "
                f"eval_template_factor={cfg.eval_template_factor}: both must be positive"
            )
        self.precision = cfg.eval_precision
        self.runner = runner or make_runner(model, cfg, device, use_cache)
        self.device = self.runner.device
        self.model = model
        self.cfg = cfg
        self.use_cache = use_cache
        self.window = hann_window(model.cfg.bins).to(self.device) if cfg.window_penalty else None
        self._track: TrackState | None = None  # the sequence of initialize / track

    # The single sequence's state, as attributes (None before initialize).
    @property
    def templates(self) -> torch.Tensor | None:
        return self._track.templates if self._track else None

    @property
    def state(self) -> np.ndarray | None:
        return self._track.state if self._track else None

    @property
    def frame_id(self) -> int:
        return self._track.frame_id if self._track else 0

    @property
    def updates(self) -> list[int]:
        return self._track.updates if self._track else []

    @property
    def last_score(self) -> float:
        return self._track.last_score if self._track else 0.0

    @classmethod
    def from_weights(
        cls,
        model_cfg: ModelConfig,
        state_dict: Mapping[str, torch.Tensor],
        cfg: TrackerConfig,
        device: torch.device | str = "cpu",
    ) -> SeqTrackTracker:
        """Rebuild the model from its settings and weights (as `train.checkpoints.load` returns them)."""
        try:
            model = model_from_weights(model_cfg, state_dict)
        except WeightsError as exc:
            raise TrackerError(str(exc)) from None
        return cls(model, cfg, device)

    def _to_tensor(self, crop: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(normalize(crop)).unsqueeze(0).to(self.device)

    def _template(self, frame: _Frame, box: np.ndarray) -> torch.Tensor:
        """(1, 1, 3, T, T) template crop around `box`."""
        mc = self.model.cfg
        window = crop_window(box, self.cfg.eval_template_factor, mc.template_size)
        return self._to_tensor(frame.crop(window)).unsqueeze(1)

    @torch.inference_mode()
    def start(self, image: ImageInput, box_xywh) -> TrackState:
        """A new sequence's state: every template slot holds the crop around the first box ([z, z])."""
        box = np.asarray(box_xywh, dtype=np.float64).reshape(-1)
        if box.shape != (4,) or not np.isfinite(box).all() or box[2] <= 0 or box[3] <= 0:
            raise TrackerError(f"initial box {box.tolist()} is invalid: give x, y, w, h with w > 0 and h > 0")
        frame = _Frame(image)
        z = self._template(frame, box)
        return TrackState(z.expand(-1, self.model.cfg.num_templates, -1, -1, -1).clone(), box)

    def initialize(self, image: ImageInput, box_xywh) -> None:
        """Start a sequence: every template slot holds the crop around the first box ([z, z])."""
        self._track = self.start(image, box_xywh)

    def track(self, image: ImageInput) -> tuple[np.ndarray, float]:
        """Track one frame; returns the box (x, y, w, h, image pixels) and the confidence score."""
        if self._track is None:
            raise TrackerError("track() called before initialize(): initialise on the first frame's box")
        return self.step([self._track], [image])[0]

    @torch.inference_mode()
    def step(self, tracks: list[TrackState], images: list[ImageInput]) -> list[tuple[np.ndarray, float]]:
        """Track the next frame of several sequences at once: `images[i]` is the next frame of the
        sequence of `tracks[i]` (updated in place). Returns each one's box and confidence score."""
        if len(tracks) != len(images) or not tracks:
            raise TrackerError(
                f"step() got {len(tracks)} states and {len(images)} images: give one per sequence"
            )
        mc = self.model.cfg
        frames = [_Frame(image) for image in images]
        windows = [crop_window(t.state, self.cfg.eval_search_factor, mc.search_size) for t in tracks]
        search = [self._to_tensor(frame.crop(w)) for frame, w in zip(frames, windows, strict=True)]
        if len(tracks) == 1:
            templates, batch_search = tracks[0].templates, search[0]
        else:
            templates = torch.cat([t.templates for t in tracks])
            batch_search = torch.cat(search)
        encoded = self.runner.encode(templates, batch_search)
        step = functools.partial(self.runner.decode_step, encoded)
        tokens, confidences = greedy_decode(step, len(tracks), mc.bins, self.window, self.device)
        out = []
        for i, (track, frame, window) in enumerate(zip(tracks, frames, windows, strict=True)):
            track.frame_id += 1
            width, height = frame.size
            track.state = clip_box(tokens_to_image_box(tokens[i], window, mc.bins), width, height)
            score = float(confidences[i].sum()) * SCORE_SCALE  # official update score
            track.last_score = score
            if (
                mc.num_templates > 1
                and track.frame_id % self.cfg.update_interval == 0
                and score > self.cfg.update_threshold
            ):
                # Keep the initial template; the newest goes last, the oldest online one drops out
                # (with two templates: template 2 is replaced).
                z = self._template(frame, track.state)
                track.templates = torch.cat([track.templates[:, :1], track.templates[:, 2:], z], dim=1)
                track.updates.append(track.frame_id)
            out.append((track.state.copy(), score))
        return out


def _frame_count(seq: Sequence, max_frames: int) -> tuple[int, np.ndarray]:
    n = seq.num_frames if max_frames <= 0 else min(max_frames, seq.num_frames)
    init_box = np.asarray(seq.boxes[0], dtype=np.float64)
    if not (np.isfinite(init_box).all() and init_box[2] > 0 and init_box[3] > 0):
        raise TrackerError(
            f"{seq.name}: frame 1 box {init_box.tolist()} has no area: fix line 1 of its groundtruth.txt"
        )
    return n, init_box


def track_sequence(tracker: SeqTrackTracker, seq: Sequence, max_frames: int = 0) -> tuple[np.ndarray, float]:
    """One-pass evaluation of a sequence: init on frame 1's ground truth, track the rest.

    Returns (N, 4) boxes with row 0 = the ground truth (N = all frames, or `max_frames` when > 0) and
    frames per second over the tracked frames (frame decoding included, initialisation excluded).
    """
    n, init_box = _frame_count(seq, max_frames)
    boxes = np.zeros((n, 4), dtype=np.float64)
    boxes[0] = init_box
    tracker.initialize(seq.frame_path(0), init_box)
    start = time.perf_counter()
    for index in range(1, n):
        boxes[index], _ = tracker.track(seq.frame_path(index))
    elapsed = time.perf_counter() - start
    fps = (n - 1) / elapsed if n > 1 and elapsed > 0 else 0.0
    return boxes, fps


@dataclass
class _Slot:
    """A sequence being tracked in a batch."""

    index: int  # position in the caller's list
    seq: Sequence
    boxes: np.ndarray
    track: TrackState
    next_frame: int = 1
    seconds: float = 0.0  # its share of the batched steps' wall time


def track_sequences(
    tracker: SeqTrackTracker, sequences: list[Sequence], max_frames: int = 0, batch: int = 1
) -> list[tuple[np.ndarray, float]]:
    """`track_sequence` for every sequence, up to `batch` of them in lockstep (one batched step per frame).

    A sequence that ends leaves its slot to the next one waiting (initialised on its first frame), so
    the batch stays full until fewer than `batch` sequences are left; the rest then finish in a
    smaller batch. Each sequence keeps its own state, so its boxes are those it gets alone (up to the
    float rounding of batched matrix products). Returns, in the order given, each sequence's boxes and
    frames per second, where a batched step's wall time is shared equally by the sequences in it: the
    frames of all sequences over the sum of their seconds is the overall rate.
    """
    if batch < 1:
        raise TrackerError(f"eval_batch={batch} is invalid: use 1 or more sequences")
    results: list[tuple[np.ndarray, float] | None] = [None] * len(sequences)
    waiting = list(enumerate(sequences))
    active: list[_Slot] = []

    def finish(slot: _Slot) -> None:
        tracked = slot.next_frame - 1
        fps = tracked / slot.seconds if tracked > 0 and slot.seconds > 0 else 0.0
        results[slot.index] = (slot.boxes, fps)

    while waiting or active:
        while waiting and len(active) < batch:
            index, seq = waiting.pop(0)
            n, init_box = _frame_count(seq, max_frames)
            boxes = np.zeros((n, 4), dtype=np.float64)
            boxes[0] = init_box
            slot = _Slot(index, seq, boxes, tracker.start(seq.frame_path(0), init_box))
            if n > 1:
                active.append(slot)
            else:
                finish(slot)
        if not active:
            continue
        start = time.perf_counter()
        out = tracker.step([s.track for s in active], [s.seq.frame_path(s.next_frame) for s in active])
        share = (time.perf_counter() - start) / len(active)
        for slot, (box, _) in zip(active, out, strict=True):
            slot.boxes[slot.next_frame] = box
            slot.next_frame += 1
            slot.seconds += share
        for slot in [s for s in active if s.next_frame >= len(s.boxes)]:
            finish(slot)
            active.remove(slot)
    return [r for r in results if r is not None]


__all__ = [
    "CLIP_MARGIN",
    "SeqTrackTracker",
    "TrackState",
    "TrackerError",
    "clip_box",
    "tokens_to_image_box",
    "track_sequence",
    "track_sequences",
]
