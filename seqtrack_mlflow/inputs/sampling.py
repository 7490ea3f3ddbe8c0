"""Training samples: frame triples from the selected sequences -> template/search crops + the target box.

Follows the official SeqTrack sampler ("order" frame mode) and processing (pytracking-style, with the
official joint and per-crop transforms). Deliberate departures, each equivalent or cheaper:

- Flip and grayscale are applied to the small crops instead of the full frames. Grayscale (one joint
  roll per sample, as the official joint transform) is per pixel, so it commutes with crop + bilinear
  resize. The official pipeline flips twice: the joint transform flips all full frames together, then
  each crop's own transform flips that crop again, each with probability 0.5 and its own roll. A crop's
  net flip is the XOR of the two, so with a fair per-crop roll every crop ends up flipped with
  probability 0.5 independently of the others; here each crop (and its box) gets one independent roll
  with `flip_prob`. Flipping a frame and cropping window [x0, x0 + side) equals cropping the mirrored
  window [W - x0 - side, W - x0) and flipping the crop; because the search jitter is symmetric, drawing
  the window in the unflipped frame gives the same distribution (only the round-half-even tie of x0 can
  differ). So frame widths are never needed and a 1280x720 frame is never transformed.
- Unusable sequences are filtered once, up front, instead of rejection-sampled per draw; a sequence is
  then drawn uniformly among the usable ones (the official draws uniformly within a dataset too).
  Several datasets (`-P datasets=`, a `pools.Mix`): each try first draws the dataset by its ratio, as
  the official sampler (`pools.py`); one dataset draws nothing, so its samples are what they always were.
- Official pytracking retries a sample whose processing marks it invalid. Here the check is pure
  geometry, done before any image is decoded: the target box mapped into the search crop must be at
  least 1 px wide and high with its centre inside the crop. After `MAX_TRIES` failed draws the last one
  is used with the search crop centred on the unjittered target (which always contains it).
- A sample leaves the worker as uint8 crops (flipped) plus its brightness factors and grayscale roll;
  grayscale, brightness and ImageNet normalisation run on the batch on the training device
  (`inputs/photometric.py`), equal to `processing.normalize` of the jittered crop up to float rounding.
  Float32 crops would be 4x the bytes through the worker-to-trainer shared memory (2.4 MB per
  256-px sample), which cost a worker more than the crop itself; on a GPU it also quarters the copy.
  The loader (`batches.py`) has the workers cut the crops straight into reused shared-memory slots.
- Every random number of sample `index` in epoch `epoch` comes from
  `np.random.default_rng([seed, epoch, index])`, never from global state, so a sample is the same
  whichever worker process (or rank, or worker count) computes it.

Bad frames. A draw whose frames cannot be decoded (truncated, not an image, damaged data: a
`datasets.base.FrameError`) is skipped and redrawn from `np.random.default_rng([seed, epoch, index, k])`,
k = 1, 2, ...: still a pure function of (seed, epoch, index) and the files, so resume stays exact. Each
sample carries how many draws it skipped and the last bad frame's one-line message; the trainer
(`SkipCounter`) warns once per bad file, logs the epoch's count as the `skipped_samples` metric, and
stops with one line naming the last bad frame when, on one process, an epoch skips more than
`max(SKIP_LIMIT_MIN, SKIP_LIMIT_FRACTION x its share)` draws (10, or 1% of the share: 600 of 60,000),
or one sample finds no decodable draw in `MAX_DRAWS`. One bad JPEG among LaSOT's 3.5 M frames costs a
handful of redraws per epoch; past 1% the data is damaged broadly (an interrupted copy, a full disk)
and training on the rest would silently bias the run.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from seqtrack_mlflow.config import ModelConfig, SamplingConfig
from seqtrack_mlflow.datasets.base import FrameError
from seqtrack_mlflow.inputs.pools import Mix, SamplePool, cumulative, pick, usable
from seqtrack_mlflow.inputs.processing import (
    CropWindow,
    box_to_crop,
    crop_image,
    crop_window,
    load_crop,
    open_frame,
)
from seqtrack_mlflow.inputs.skips import (
    MAX_DRAWS,
    SKIP_LIMIT_FRACTION,
    SKIP_LIMIT_MIN,
    BadFramesError,
    SkipCounter,
)

if TYPE_CHECKING:
    from seqtrack_mlflow.datasets.base import Sequence

MAX_TRIES = 10  # draws per sample before falling back to an unjittered search crop
GAP_STEP = 5  # official widening of the frame window when it holds no visible frame


class SamplingError(ValueError):
    """No training sample can be drawn from the given sequences (a data-selection mistake)."""


@dataclass(frozen=True)
class SampleDraw:
    """Every random choice of one sample, so that turning it into pixels is deterministic."""

    sequence: int  # index into the usable sequences of its dataset's pool (TrainingSamples.pools)
    frames: np.ndarray  # (num_templates + 1,) frame indices: templates first, search frame last
    search_box: np.ndarray  # (4,) jittered x, y, w, h (image pixels) the search crop is centred on
    flip: np.ndarray  # (num_templates + 1,) bool, one independent roll per crop, same order as frames
    gray: bool  # one roll for the whole sample
    brightness: np.ndarray  # (num_templates + 1,) per-crop brightness factor, same order as frames
    dataset: int = 0  # index into TrainingSamples.pools (the mix's datasets)


def is_usable(seq: Sequence, sampling: SamplingConfig) -> bool:
    """Official rule: long enough, and enough visible frames to draw templates and search from."""
    visible = int(np.count_nonzero(seq.visible))
    return seq.num_frames >= sampling.min_frames and visible >= sampling.min_visible


def choose_frames(
    visible: np.ndarray, rng: np.random.Generator, max_interval: int, count: int = 3
) -> np.ndarray:
    """Official "order" frame choice: a visible base frame, then `count` visible frames drawn with
    replacement from [base - gap, base + gap) (gap widened by 5 until that holds a visible frame),
    sorted descending with probability 0.5, else ascending. The base frame itself is not returned.
    """
    visible_ids = np.flatnonzero(np.asarray(visible, dtype=bool))
    if visible_ids.size == 0:
        raise SamplingError("cannot choose frames: the sequence has no visible frame")
    n = len(visible)
    base = int(visible_ids[rng.integers(visible_ids.size)])
    gap = max_interval
    while True:
        lo = np.searchsorted(visible_ids, max(base - gap, 0), side="left")
        hi = np.searchsorted(visible_ids, min(base + gap, n), side="left")
        if hi > lo:
            break
        gap += GAP_STEP
    frames = np.sort(visible_ids[lo + rng.integers(hi - lo, size=count)])
    if rng.random() < 0.5:
        frames = frames[::-1].copy()
    return frames


def jitter_box(
    box: np.ndarray, rng: np.random.Generator, center_jitter: float, scale_jitter: float
) -> np.ndarray:
    """Official search jitter: size * exp(N(0,1) * scale), centre + sqrt(area) * centre_jitter * (U - 0.5)."""
    box = np.asarray(box, dtype=np.float64)
    wh = box[2:] * np.exp(rng.standard_normal(2) * scale_jitter)
    center = box[:2] + 0.5 * box[2:] + math.sqrt(float(wh[0] * wh[1])) * center_jitter * (rng.random(2) - 0.5)
    return np.concatenate([center - 0.5 * wh, wh])


def target_in_crop(box_in_crop: np.ndarray, out_size: int) -> bool:
    """A usable search crop: target at least 1 px each way, centre inside the crop."""
    x, y, w, h = (float(v) for v in box_in_crop)
    cx, cy = x + 0.5 * w, y + 0.5 * h
    return w >= 1 and h >= 1 and 0 <= cx < out_size and 0 <= cy < out_size


def draw_sample(
    sequences: Seq[Sequence],
    rng: np.random.Generator,
    num_templates: int,
    search_size: int,
    sampling: SamplingConfig,
) -> SampleDraw:
    """Draw sequence, frames, augmentation and search jitter, retrying when the target misses the crop."""
    return draw_mixed((SamplePool("", sequences),), None, rng, num_templates, search_size, sampling)


def draw_mixed(
    pools: Seq[SamplePool],
    cum: np.ndarray | None,
    rng: np.random.Generator,
    num_templates: int,
    search_size: int,
    sampling: SamplingConfig,
) -> SampleDraw:
    """`draw_sample` over a mix: each try first draws the dataset (`pools.pick`, nothing to draw for
    one pool), as the official sampler does inside its retry loop. An image pool's frames are its one
    image, three times."""
    draw = None
    for _ in range(MAX_TRIES):
        dataset = pick(cum, rng)
        pool = pools[dataset].sequences
        seq_index = int(rng.integers(len(pool)))
        seq = pool[seq_index]
        if pools[dataset].images:
            frames = np.zeros(num_templates + 1, dtype=np.int64)
        else:
            frames = choose_frames(seq.visible, rng, sampling.max_interval, count=num_templates + 1)
        gray = bool(rng.random() < sampling.grayscale_prob)
        flip = rng.random(num_templates + 1) < sampling.flip_prob
        gt = seq.boxes[frames[-1]]
        search_box = jitter_box(gt, rng, sampling.center_jitter, sampling.scale_jitter)
        b = sampling.brightness_jitter
        brightness = rng.uniform(max(0.0, 1.0 - b), 1.0 + b, size=num_templates + 1)
        draw = SampleDraw(seq_index, frames, search_box, flip, gray, brightness, dataset)
        window = crop_window(search_box, sampling.search_factor, search_size)
        if target_in_crop(box_to_crop(gt, window), search_size):
            return draw
    assert draw is not None
    gt = pools[draw.dataset].sequences[draw.sequence].boxes[draw.frames[-1]]
    return dataclasses.replace(draw, search_box=gt.astype(np.float64))


def _load(path: Path, window: CropWindow, reduced_decode: bool, out: np.ndarray, flip: bool) -> None:
    if reduced_decode:
        load_crop(path, window, out, flip)
        return
    img, scale = open_frame(path)  # full-resolution decode (for comparisons and benchmarks)
    crop = crop_image(img, window, scale)
    out[...] = crop[:, ::-1] if flip else crop


def render_sample(
    seq: Sequence,
    draw: SampleDraw,
    model_cfg: ModelConfig,
    sampling: SamplingConfig,
    reduced_decode: bool = True,
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Decode, crop and flip the drawn frames: uint8 (H, W, 3) crops, templates stacked first. Templates
    are cut around their ground-truth box (no template jitter), the search crop around the jittered box;
    the box is returned in search-crop pixels. Brightness and grayscale travel as numbers, applied on
    the training device (`photometric.model_inputs`). `out`: (templates, search) arrays to cut the crops
    into (a batch slot in shared memory, `batches.py`) instead of new ones."""
    t_size, s_size = model_cfg.template_size, model_cfg.search_size
    boxes = seq.boxes[draw.frames]
    windows = [crop_window(b, sampling.template_factor, t_size) for b in boxes[:-1]]
    windows.append(crop_window(draw.search_box, sampling.search_factor, s_size))
    if out is None:
        templates = np.empty((len(windows) - 1, t_size, t_size, 3), dtype=np.uint8)
        search = np.empty((s_size, s_size, 3), dtype=np.uint8)
    else:
        templates, search = out
    # Each crop is cut straight into its place in the sample; a frame drawn twice with the same
    # window is decoded once.
    done: dict[tuple[int, CropWindow], tuple[np.ndarray, bool]] = {}
    for frame, window, flip, out in zip(
        draw.frames.tolist(), windows, draw.flip.tolist(), [*templates, search], strict=True
    ):
        key = (frame, window)
        if key in done:
            twin, twin_flip = done[key]
            out[...] = twin[:, ::-1] if flip != twin_flip else twin
        else:
            _load(seq.frame_path(frame), window, reduced_decode, out, flip)
            done[key] = (out, flip)
    box = box_to_crop(boxes[-1], windows[-1])
    if draw.flip[-1]:  # the box follows its crop: continuous x -> S - x
        box[0] = s_size - box[0] - box[2]
    return {
        "templates": templates,
        "search": search,
        "search_box": box.astype(np.float32),
        "brightness": np.asarray(draw.brightness, dtype=np.float32),
        "gray": np.array(draw.gray),
    }


class TrainingSamples(Dataset):
    """`samples_per_epoch` samples per epoch, each a pure function of (seed, epoch, index).

    Call `set_epoch` before iterating a loader over it (workers copy the dataset at iteration start).
    """

    def __init__(
        self,
        sequences: list[Sequence] | Mix,
        model_cfg: ModelConfig,
        sampling: SamplingConfig,
        seed: int,
        samples_per_epoch: int,
        *,
        reduced_decode: bool = True,
    ) -> None:
        """`sequences`: one dataset's sequences, or a `Mix` of datasets drawn by their ratios (each
        sample then also says which dataset it came from: `dataset`, in `mix` order)."""
        self.mix = sequences if isinstance(sequences, Mix) else None
        given = self.mix.pools if self.mix else (SamplePool("", sequences),)
        pools = tuple(usable(pool, lambda s: is_usable(s, sampling)) for pool in given)
        for pool, before in zip(pools, given, strict=True):
            if not len(pool.sequences):
                where = f" of {pool.name}" if self.mix else ""
                raise SamplingError(
                    f"none of the {len(before.sequences)} training sequences{where} is usable: each needs >= "
                    f"{sampling.min_frames} frames and >= {sampling.min_visible} visible frames; "
                    "select more or longer sequences"
                )
        if samples_per_epoch < 1:
            raise SamplingError(f"samples_per_epoch={samples_per_epoch} is invalid: use a positive number")
        self.pools = pools
        self.cumulative = cumulative(pools)
        self.sequences = pools[0].sequences  # the first dataset's usable sequences
        self.skipped = sum(len(b.sequences) - len(p.sequences) for p, b in zip(pools, given, strict=True))
        self.model_cfg = model_cfg
        self.sampling = sampling
        self.seed = int(seed)
        self.samples_per_epoch = int(samples_per_epoch)
        self.reduced_decode = reduced_decode
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def draw(self, index: int) -> SampleDraw:
        return self._draw(self.rng(index))

    def _draw(self, rng: np.random.Generator) -> SampleDraw:
        mc = self.model_cfg
        return draw_mixed(self.pools, self.cumulative, rng, mc.num_templates, mc.search_size, self.sampling)

    def draw_rng(self, index: int, attempt: int) -> np.random.Generator:
        """Draw `attempt` of sample `index`: 0 is `rng(index)`, k > 0 the k-th redraw after bad frames."""
        if attempt == 0:
            return self.rng(index)
        return np.random.default_rng([self.seed, self.epoch, index, attempt])

    def crop_shapes(self) -> tuple[tuple[int, int, int, int], tuple[int, int, int]]:
        """A sample's uint8 crops: templates (num_templates, T, T, 3) and search (S, S, 3)."""
        t, s = self.model_cfg.template_size, self.model_cfg.search_size
        return (self.model_cfg.num_templates, t, t, 3), (s, s, 3)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        """The sample's tensors, plus `skipped` (draws discarded for bad frames), `bad_frame` (the last
        bad frame's one-line message, or "") and `failed` (no decodable draw in MAX_DRAWS: the crops
        are zeros, the trainer stops). Never raises for a bad frame: a DataLoader worker would turn the
        error into a multi-line traceback."""
        template_shape, search_shape = self.crop_shapes()
        templates = np.empty(template_shape, dtype=np.uint8)
        search = np.empty(search_shape, dtype=np.uint8)
        fields = self.render_into(index, templates, search)
        return {
            "templates": torch.from_numpy(templates),
            "search": torch.from_numpy(search),
            **{k: torch.from_numpy(v) for k, v in fields.items() if isinstance(v, np.ndarray)},
            "bad_frame": fields["bad_frame"],
        }

    def render_into(
        self, index: int, templates: np.ndarray, search: np.ndarray
    ) -> dict[str, np.ndarray | str]:
        """Sample `index`'s crops cut into `templates` and `search` (shaped as `crop_shapes`);
        returns its other fields: search_box, brightness, gray, skipped, failed (arrays), bad_frame (str),
        and for a mix `dataset`."""
        if not 0 <= index < self.samples_per_epoch:
            raise IndexError(f"sample index {index} out of range [0, {self.samples_per_epoch})")
        bad: FrameError | None = None
        for attempt in range(MAX_DRAWS):
            draw = self._draw(self.draw_rng(index, attempt))
            try:
                out = render_sample(
                    self.pools[draw.dataset].sequences[draw.sequence],
                    draw,
                    self.model_cfg,
                    self.sampling,
                    self.reduced_decode,
                    out=(templates, search),
                )
            except FrameError as exc:
                bad = exc
                continue
            return self._with_dataset(_fields(out, attempt, bad, failed=False), draw)
        templates[...] = 0
        search[...] = 0
        zeros = {
            "search_box": np.zeros(4, dtype=np.float32),
            "brightness": np.ones(self.model_cfg.num_templates + 1, dtype=np.float32),
            "gray": np.array(False),
        }
        return self._with_dataset(_fields(zeros, MAX_DRAWS, bad, failed=True), draw)

    def _with_dataset(
        self, fields: dict[str, np.ndarray | str], draw: SampleDraw
    ) -> dict[str, np.ndarray | str]:
        """A mix's samples say which dataset they came from (`dataset`, the trainer counts them)."""
        if self.mix is not None:
            fields["dataset"] = np.array(draw.dataset, dtype=np.int64)
        return fields


def _fields(
    out: dict[str, np.ndarray], skipped: int, bad: FrameError | None, *, failed: bool
) -> dict[str, np.ndarray | str]:
    return {
        "search_box": out["search_box"],
        "brightness": out["brightness"],
        "gray": out["gray"],
        "skipped": np.array(skipped, dtype=np.int64),
        "bad_frame": str(bad) if bad is not None else "",
        "failed": np.array(failed),
    }


__all__ = [
    "MAX_DRAWS",
    "MAX_TRIES",
    "SKIP_LIMIT_FRACTION",
    "SKIP_LIMIT_MIN",
    "BadFramesError",
    "SkipCounter",
    "SampleDraw",
    "SamplingError",
    "TrainingSamples",
    "choose_frames",
    "draw_mixed",
    "draw_sample",
    "is_usable",
    "jitter_box",
    "render_sample",
    "target_in_crop",
]
