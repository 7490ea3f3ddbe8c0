"""Deterministic synthetic LaSOT: a real LaSOT-format tree for demos, tests and benchmarks.

Each sequence is a textured target (a colour pattern in an ellipse or rounded rectangle with a dark rim,
different per sequence) over a muted smooth-noise background that pans slowly, with the challenges of
LaSOT's attributes: it moves smoothly (random velocity plus smoothed random acceleration, bouncing off
the frame edges) except for a burst of fast motion (a few frames at 6-10 % of the frame side per frame,
up to more than its own size between frames: LaSOT's "fast motion"), motion-blurred in proportion to its
displacement; it changes scale by up to exp(+-0.5) (sides over 1.6x apart within a sequence, as LaSOT's
"scale variation"), is fully covered for a few frames by a passing textured occluder ("full occlusion"),
and leaves the view for a few frames ("out of view", flagged once less than a fifth of it is inside the
frame). Version 2 added the fast-motion burst and the blur and doubled the scale range: in version 1 the
target drifted by under a tenth of its size per frame and scaled by at most exp(+-0.25), which a
correlation filter with a fixed-size window follows as well as a learned tracker. Flags are computed
from the drawn geometry, so `full_occlusion` and `out_of_view` are exact; out-of-view frames keep the
last in-view box, as LaSOT's annotations do. Frame 1 is always fully visible.

Everything is derived from (seed, class, sequence number), so generating one class alone gives the same
sequences as generating it together with others. Drawing is numpy/PIL only (no per-pixel Python).

The registry entry (`Synthetic`, `source=synthetic`) generates the selected classes once per
configuration into `<cache>/synthetic/<key>/`, each class published complete (`cache.publish`).
"""

from __future__ import annotations

import math
import shutil
import uuid
from collections.abc import Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from seqtrack_mlflow.config import ConfigError, DataConfig, parse_size

from . import synthetic_textures as textures
from .base import DataSourceError, Found, RootSource
from .cache import CACHE_ENV, CACHE_SETTING, COMPLETE_MARKER, cache_dir_of, publish
from .lasot import FRAME_NAME, LASOT_CLASSES, SEQUENCES_PER_CLASS, TEST_SEQUENCE_NUMBERS, LasotFormat

GENERATOR_VERSION = 2  # bump when the output changes: cached synthetic trees are keyed by it
JPEG_QUALITY = 90
MIN_EPISODE_FRAMES = 20  # shorter sequences get no occlusion / out-of-view episode
CACHE_FOLDER = "synthetic"  # generated trees live in <cache>/synthetic/<key>/


@dataclass(frozen=True)
class Track:
    """The geometry of one synthetic sequence (integer pixel boxes x, y, w, h)."""

    target: np.ndarray  # (N, 4) drawn target box, may extend beyond the image
    occluder: np.ndarray | None  # (N, 4) drawn occluder box, or None (no occlusion episode)
    groundtruth: np.ndarray  # (N, 4) LaSOT annotation: clipped to the image, stale when out of view
    full_occlusion: np.ndarray  # (N,) bool
    out_of_view: np.ndarray  # (N,) bool
    pan: np.ndarray  # (N, 2) background crop offset


def sequence_numbers(class_name: str, count: int) -> list[int]:
    """Sequence numbers to generate so a class covers both protocol II splits (about 1 test in 4)."""
    if not 1 <= count <= SEQUENCES_PER_CLASS:
        raise ConfigError(f"synthetic_sequences={count} is invalid: use 1..{SEQUENCES_PER_CLASS}")
    test = sorted(TEST_SEQUENCE_NUMBERS[class_name])
    train = [k for k in range(1, SEQUENCES_PER_CLASS + 1) if k not in test]
    n_test = min(len(test), max(1, round(count / 4))) if count >= 2 else 0
    return sorted(test[:n_test] + train[: count - n_test])


def _seed_sequence(seed: int, class_name: str, number: int) -> np.random.Generator:
    return np.random.default_rng([seed % 2**63, LASOT_CLASSES.index(class_name), number, GENERATOR_VERSION])


def _smoothstep_window(n: int, start: int, ramp: int, plateau: int) -> np.ndarray:
    """0 -> 1 (smooth ramp) -> 1 for `plateau` frames -> 0; zero outside."""
    t = np.arange(n, dtype=np.float64)
    up = np.clip((t - start + 1) / ramp, 0.0, 1.0)
    down = np.clip((start + ramp + plateau + ramp - 1 - t) / ramp, 0.0, 1.0)
    f = np.minimum(up, down)
    return f * f * (3.0 - 2.0 * f)


def _simulate(rng: np.random.Generator, n: int, width: int, height: int) -> Track:
    """One candidate trajectory; the caller re-draws if frame 1 or the episodes come out wrong."""
    side = float(max(width, height))
    # Size: 11-19 % of each side, scaled by up to exp(+-0.5) over time -> 7-31 % of the side.
    base = np.array([rng.uniform(0.11, 0.19) * width, rng.uniform(0.11, 0.19) * height])
    t = np.arange(n, dtype=np.float64)
    amplitude = rng.uniform(0.25, 0.5)  # LaSOT's scale variation: sizes over 1.6x apart within a sequence
    period = rng.uniform(0.6, 1.3) * max(n, 20)
    scale = np.exp(amplitude * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)))
    aspect = 1.0 + 0.06 * np.sin(2 * np.pi * t / (0.7 * period) + rng.uniform(0, 2 * np.pi))
    size = base[None, :] * np.stack([scale * aspect, scale / aspect], axis=1)

    # Centre: random velocity, smoothed random acceleration, reflection at the frame edges.
    speed = rng.uniform(0.004, 0.012) * side
    angle = rng.uniform(0, 2 * np.pi)
    velocity = speed * np.array([math.cos(angle), math.sin(angle)])
    accel = rng.normal(0.0, 0.12 * speed, size=(n, 2))
    # Fast motion (LaSOT's attribute: the target moves more than its size between frames): a burst of
    # a few frames at 6-10 % of the side per frame, before the occlusion and out-of-view episodes.
    burst = np.zeros(n, dtype=bool)
    if n >= MIN_EPISODE_FRAMES:
        burst_start = int(rng.uniform(0.12, 0.22) * n)
        burst[burst_start : burst_start + max(3, round(0.06 * n))] = True
    burst_angle = rng.uniform(0, 2 * np.pi)
    burst_velocity = rng.uniform(0.06, 0.10) * side * np.array([math.cos(burst_angle), math.sin(burst_angle)])
    bounds = np.array([width, height], dtype=np.float64)
    centre = np.empty((n, 2))
    pos = rng.uniform(0.3, 0.7, size=2) * bounds
    for i in range(n):
        half = size[i] / 2
        pos = np.clip(pos, half, bounds - half)
        centre[i] = pos
        velocity = 0.97 * velocity + accel[i]
        norm = np.linalg.norm(velocity)
        if norm > 2 * speed:
            velocity *= 2 * speed / norm
        pos = pos + velocity + (burst_velocity if burst[i] else 0.0)
        low, high = pos < half, pos > bounds - half
        pos = np.where(low, 2 * half - pos, np.where(high, 2 * (bounds - half) - pos, pos))
        velocity = np.where(low | high, -velocity, velocity)
        burst_velocity = np.where(low | high, -burst_velocity, burst_velocity)

    occluder = None
    if n >= MIN_EPISODE_FRAMES:
        # Out of view: a smooth excursion through the nearest edge, far enough to leave the frame fully.
        ramp, plateau = max(3, round(0.08 * n)), max(2, round(0.08 * n))
        start = int(rng.uniform(0.58, 0.68) * n)
        window = _smoothstep_window(n, start, ramp, plateau)
        held = slice(start + ramp, start + ramp + plateau)
        # Distance to leave through each edge: left, right, top, bottom.
        need = (
            np.stack(
                [
                    centre[held, 0] + size[held, 0] / 2,
                    width - centre[held, 0] + size[held, 0] / 2,
                    centre[held, 1] + size[held, 1] / 2,
                    height - centre[held, 1] + size[held, 1] / 2,
                ]
            ).max(axis=1)
            + 3.0
        )
        edge = int(np.argmin(need))
        axis, sign = edge // 2, (-1.0 if edge % 2 == 0 else 1.0)
        centre[:, axis] += sign * need[edge] * window

        # Occluder: a textured rectangle crossing the target around frame `middle`, covering it fully.
        middle = int(rng.uniform(0.3, 0.45) * n)
        axis_o = int(rng.integers(0, 2))
        rel_speed = rng.uniform(0.02, 0.035) * side * rng.choice([-1.0, 1.0])
        covered = max(2, round(0.06 * n))
        near = slice(max(0, middle - covered), middle + covered + 1)
        occ_size = np.empty(2)
        occ_size[axis_o] = size[near, axis_o].max() + abs(rel_speed) * (covered - 1) + 6
        occ_size[1 - axis_o] = size[near, 1 - axis_o].max() * 1.4 + 6
        target_velocity = centre[min(middle + 1, n - 1)] - centre[max(middle - 1, 0)]
        occ_velocity = target_velocity / 2
        occ_velocity[axis_o] += rel_speed
        occ_centre = centre[middle][None, :] + occ_velocity[None, :] * (t - middle)[:, None]
        occluder = np.round(np.concatenate([occ_centre - occ_size / 2, np.broadcast_to(occ_size, (n, 2))], 1))
        occluder = occluder.astype(np.int64)

    target = np.concatenate([np.round(centre - size / 2), np.maximum(np.round(size), 2)], axis=1)
    target = target.astype(np.int64)
    x0, y0 = target[:, 0], target[:, 1]
    x1, y1 = x0 + target[:, 2], y0 + target[:, 3]
    # Out of view once less than a fifth of the box is inside the frame: a sliver is no usable target.
    inside_w = np.clip(np.minimum(x1, width) - np.maximum(x0, 0), 0, None)
    inside_h = np.clip(np.minimum(y1, height) - np.maximum(y0, 0), 0, None)
    out_of_view = inside_w * inside_h < 0.2 * target[:, 2] * target[:, 3]
    clipped = np.stack(
        [np.clip(x0, 0, width), np.clip(y0, 0, height), np.clip(x1, 0, width), np.clip(y1, 0, height)], 1
    )
    gt = np.concatenate([clipped[:, :2], clipped[:, 2:] - clipped[:, :2]], axis=1)
    # LaSOT keeps the last in-view box while the target is away: forward-fill from the last in-view frame.
    last_seen = np.maximum.accumulate(np.where(out_of_view, 0, np.arange(n)))
    gt = gt[last_seen]
    if occluder is not None:
        ox0, oy0 = occluder[:, 0], occluder[:, 1]
        ox1, oy1 = ox0 + occluder[:, 2], oy0 + occluder[:, 3]
        vis = clipped  # only the visible part of the target needs covering
        occlusion = (ox0 <= vis[:, 0]) & (oy0 <= vis[:, 1]) & (ox1 >= vis[:, 2]) & (oy1 >= vis[:, 3])
        occlusion &= ~out_of_view
    else:
        occlusion = np.zeros(n, dtype=bool)

    pad = _pan_pad(width, height)
    phase = rng.uniform(0, 2 * np.pi, size=2)
    pan_period = rng.uniform(1.0, 2.0) * max(n, 20)
    pan = np.round(pad + 0.8 * pad * np.sin(2 * np.pi * t[:, None] / pan_period + phase[None, :]))
    return Track(target, occluder, gt, occlusion, out_of_view, pan.astype(np.int64))


def _pan_pad(width: int, height: int) -> int:
    return max(2, round(0.04 * max(width, height)))


def _valid(track: Track, n: int) -> bool:
    first_inside = track.groundtruth[0].tolist() == track.target[0].tolist()
    ok = first_inside and not track.full_occlusion[0] and not track.out_of_view[0]
    if n >= MIN_EPISODE_FRAMES:
        ok = ok and bool(track.full_occlusion.any()) and bool(track.out_of_view.any())
    return ok


def simulate_track(seed: int, class_name: str, number: int, frames: int, size: tuple[int, int]) -> Track:
    """The geometry of sequence `<class>-<number>`; a pure function of its arguments."""
    rng = _seed_sequence(seed, class_name, number)
    for _ in range(100):  # rejection sampling: deterministic, and almost always accepts the first draw
        track = _simulate(rng, frames, *size)
        if _valid(track, frames):
            return track
    raise RuntimeError(f"synthetic generator found no valid track for {class_name}-{number} at {size}")


def frame_painter(
    seed: int, class_name: str, number: int, track: Track, size: tuple[int, int]
) -> tuple[Callable[[int], Image.Image], str]:
    """A function painting frame i of sequence `<class>-<number>` with geometry `track`, and how its
    target looks (a few words); other layouts (`synthetic_layouts.py`) paint their frames with it."""
    width, height = size
    rng = np.random.default_rng([seed % 2**63, LASOT_CLASSES.index(class_name), number, GENERATOR_VERSION, 1])
    pad = _pan_pad(width, height)
    background = textures.background(rng, width + 2 * pad, height + 2 * pad)
    texture, mask, looks = textures.target_texture(rng)
    occluder_image = None
    if track.occluder is not None:
        occluder_image = textures.occluder_texture(rng, int(track.occluder[0, 2]), int(track.occluder[0, 3]))

    # Motion blur: a fast target is blurred by its displacement since the previous frame (isotropic,
    # a box blur over a sixth of it, at most 4 px: cheap, and enough to smear its texture and rim).
    centres = track.target[:, :2] + track.target[:, 2:] / 2
    motion = np.r_[0.0, np.linalg.norm(np.diff(centres, axis=0), axis=1)]
    blur = np.minimum(4.0, motion / 6.0)

    def paint(i: int) -> Image.Image:
        ox, oy = track.pan[i]
        frame = Image.fromarray(background[oy : oy + height, ox : ox + width])
        x, y, w, h = (int(v) for v in track.target[i])
        resample = Image.Resampling.BILINEAR  # paste clips whatever lies outside the frame
        look, alpha = texture.resize((w, h), resample), mask.resize((w, h), resample)
        if blur[i] >= 1.0:
            look, alpha = (im.filter(ImageFilter.BoxBlur(float(blur[i]))) for im in (look, alpha))
        frame.paste(look, (x, y), alpha)
        if occluder_image is not None:
            frame.paste(occluder_image, (int(track.occluder[i, 0]), int(track.occluder[i, 1])))
        return frame

    return paint, looks


def render_sequence(
    seq_dir: Path, seed: int, class_name: str, number: int, frames: int, size: tuple[int, int]
) -> Track:
    """Write one sequence folder (frames, ground truth, flags, sentence) and return its geometry."""
    track = simulate_track(seed, class_name, number, frames, size)
    paint, looks = frame_painter(seed, class_name, number, track, size)
    img_dir = seq_dir / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    for i in range(frames):
        paint(i).save(img_dir / FRAME_NAME.format(i + 1), quality=JPEG_QUALITY)

    lines = "".join(f"{x},{y},{w},{h}\n" for x, y, w, h in track.groundtruth.tolist())
    (seq_dir / "groundtruth.txt").write_text(lines)
    (seq_dir / "full_occlusion.txt").write_text(",".join(map(str, track.full_occlusion.astype(int))))
    (seq_dir / "out_of_view.txt").write_text(",".join(map(str, track.out_of_view.astype(int))))
    (seq_dir / "nlp.txt").write_text(f"the {looks} {class_name} moving over the textured background\n")
    return track


def generate_lasot(
    root: Path,
    classes: Seq[str],
    sequences_per_class: int = 4,
    frames: int = 60,
    size: tuple[int, int] = (320, 240),
    seed: int = 0,
) -> list[Path]:
    """Write `<root>/<class>/<class>-<k>/` for each class; returns the sequence folders in order."""
    unknown = [name for name in classes if name not in LASOT_CLASSES]
    if unknown:
        raise DataSourceError(
            f"unknown LaSOT class {unknown[0]!r} for the synthetic generator: choose from "
            f"{', '.join(LASOT_CLASSES)}"
        )
    if frames < 1:
        raise ConfigError(f"synthetic_frames={frames} is invalid: use a positive number")
    width, height = int(size[0]), int(size[1])
    if width < 32 or height < 32:
        raise ConfigError(f"synthetic_size={width}x{height} is too small: use at least 32x32")
    written = []
    for name in classes:
        for number in sequence_numbers(name, sequences_per_class):
            seq_dir = Path(root) / name / f"{name}-{number}"
            render_sequence(seq_dir, seed, name, number, frames, (width, height))
            written.append(seq_dir)
    return written


def synthetic_key(seed: int, sequences: int, frames: int, size: tuple[int, int]) -> str:
    """Folder name of one synthetic configuration; the generator version makes old trees stale."""
    return f"v{GENERATOR_VERSION}-seed{seed}-seq{sequences}-f{frames}-{size[0]}x{size[1]}"


def prepare_tree(cfg: DataConfig, classes: list[str], seed: int) -> Path:
    """Generate missing classes into `<cache>/synthetic/<key>/`, each published by an atomic rename."""
    cfg.validate()  # the synthetic limits, declared with the settings
    size = parse_size(cfg.synthetic_size)
    cache = cache_dir_of(cfg) / CACHE_FOLDER
    root = cache / synthetic_key(seed, cfg.synthetic_sequences, cfg.synthetic_frames, size)
    root.mkdir(parents=True, exist_ok=True)
    for name in classes:
        if name not in LASOT_CLASSES:
            raise DataSourceError(f"unknown LaSOT class {name!r}: choose from {', '.join(LASOT_CLASSES)}")
        target = root / name
        if (target / COMPLETE_MARKER).is_file():
            continue
        tmp = cache / ".tmp" / f"{root.name}-{name}-{uuid.uuid4().hex[:8]}"
        try:
            generate_lasot(
                tmp,
                [name],
                sequences_per_class=cfg.synthetic_sequences,
                frames=cfg.synthetic_frames,
                size=size,
                seed=seed,
            )
            (tmp / name / COMPLETE_MARKER).write_text("complete\n")  # in a private folder: no reader yet
            publish(tmp / name, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root


class Synthetic(LasotFormat):
    """The generator's LaSOT-format trees in the cache: a labelled stand-in for demos and tests."""

    name = "synthetic"
    label = "synthetic LaSOT-format data"
    sources = ("synthetic",)
    roots = (RootSource("synthetic", CACHE_SETTING, CACHE_ENV),)
    caveat = "synthetic stand-in, not real LaSOT"

    def auto_source(self, data: DataConfig) -> str:
        return "synthetic"

    def check(self, data: DataConfig, source: str) -> None:
        """Nothing to refuse before a run: the tree is generated on demand."""

    def used_settings(self, data: DataConfig, source: str) -> dict[str, str]:
        return {}

    def find_root(self, data: DataConfig) -> Found:
        cache = cache_dir_of(data) / CACHE_FOLDER
        folders = cache.iterdir() if cache.is_dir() else ()
        trees = [p for p in folders if p.is_dir() and not p.name.startswith(".")]
        if trees:
            return Found(cache, f"{cache} ({len(trees)} generated tree{'' if len(trees) == 1 else 's'})")
        return Found(None, "no (generated when first used)")

    def classes(self, data: DataConfig, source: str) -> list[str]:
        return list(LASOT_CLASSES)

    def prepare(self, data: DataConfig, source: str, classes: list[str], seed: int) -> Path:
        return prepare_tree(data, classes, seed)


__all__ = [
    "GENERATOR_VERSION",
    "Synthetic",
    "Track",
    "frame_painter",
    "generate_lasot",
    "prepare_tree",
    "render_sequence",
    "sequence_numbers",
    "simulate_track",
    "synthetic_key",
]
