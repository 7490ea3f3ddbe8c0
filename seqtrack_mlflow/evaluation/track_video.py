"""Tracking a user's video: the evaluate tracker on every frame of a `VideoSource` from a first box, and
what a person reads and watches afterwards, written to one folder:

    boxes.txt     one `x,y,w,h` line per frame (LaSOT result format, as evaluate's results/<seq>.txt)
    boxes.csv     frame, time_s, x, y, w, h, confidence (empty for frame 0: the box you gave)
    tracked.mp4   every frame with the box and its confidence drawn (H.264; tracked.webm, VP9, where
                  PyAV has no libx264)
    preview.gif   up to PREVIEW_FRAMES frames spread over the whole video, at most PREVIEW_SIDE px

One pass: each frame is decoded, tracked, drawn and encoded before the next is read, so memory does not
grow with the video's length. No MLflow: the track step logs what this returns.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from seqtrack_mlflow.evaluation.results import write_result_file
from seqtrack_mlflow.evaluation.tracker import SeqTrackTracker
from seqtrack_mlflow.video.draw import TRACKER, annotate, fit, scaled
from seqtrack_mlflow.video.encode import VideoWriter, pick_encoder, write_gif
from seqtrack_mlflow.video.source import VideoError, VideoSource

PREVIEW_FRAMES = 32
PREVIEW_SIDE = 320
PREVIEW_MS = (60, 250)  # a preview frame is shown this long at least / at most (ms)


@dataclass(frozen=True)
class TrackedVideo:
    boxes: np.ndarray  # (N, 4) x, y, w, h; row 0 = the box given
    confidences: np.ndarray  # (N,) the tracker's score per frame; NaN for frame 0
    times: np.ndarray  # (N,) seconds since the first frame
    updates: list[int]  # frames at which template 2 was replaced
    track_seconds: float  # time spent in the tracker (frames 1..N-1)
    seconds: float  # the whole pass: decode, track, draw, encode
    complete: bool  # every frame of the input was read (not stopped by max_frames)
    files: list[Path]

    @property
    def frames(self) -> int:
        return len(self.boxes)

    @property
    def fps(self) -> float:
        """Tracked frames per second of tracker time (as evaluate's fps, frames decoded beforehand)."""
        return (self.frames - 1) / self.track_seconds if self.frames > 1 and self.track_seconds > 0 else 0.0

    @property
    def mean_confidence(self) -> float | None:
        return float(np.mean(self.confidences[1:])) if self.frames > 1 else None


def check_first_box(box: tuple[float, float, float, float], source: VideoSource, text: str) -> None:
    """The box must lie inside the first frame (and have a size: `config.parse_box` checked that)."""
    x, y, w, h = box
    if x < 0 or y < 0 or x + w > source.width or y + h > source.height:
        raise VideoError(
            f"box={text} lies outside the first frame of {source.name} ({source.width}x{source.height} "
            f"pixels): give x,y,w,h with x >= 0, y >= 0, x + w <= {source.width}, y + h <= {source.height}"
        )


class Excerpt:
    """Keeps at most `size` frames spread evenly over a stream of unknown length: every `stride`-th
    frame, and when full, every other one of those (the stride doubles)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.stride = 1
        self.kept: list[tuple[int, Image.Image]] = []

    def wants(self, index: int) -> bool:
        return index % self.stride == 0

    def add(self, index: int, image: Image.Image) -> None:
        self.kept.append((index, image))
        if len(self.kept) > self.size:
            self.stride *= 2
            self.kept = [(i, im) for i, im in self.kept if i % self.stride == 0]


def confidence_label(confidence: float) -> str:
    return "start" if math.isnan(confidence) else f"conf {confidence:.2f}"


def _caption(index: int, seconds: float) -> str:
    return f"frame {index}  {seconds:.2f} s"


def track_video(
    tracker: SeqTrackTracker,
    source: VideoSource,
    box: tuple[float, float, float, float],
    out_dir: Path,
    max_frames: int = 0,
) -> TrackedVideo:
    """Track `source` from `box` in its first frame (all frames, or the first `max_frames` when > 0) and
    write the four files above into `out_dir`. A progress bar shows on a terminal."""
    out_dir.mkdir(parents=True, exist_ok=True)
    boxes, confidences, times = [], [], []
    excerpt = Excerpt(PREVIEW_FRAMES)
    writer = (
        VideoWriter(out_dir / "tracked", source.width, source.height, source.fps) if pick_encoder() else None
    )
    if writer is None:
        print("warning: this PyAV has neither libx264 nor libvpx-vp9: no tracked video is written")
    total = min(source.expected_frames or 0, max_frames or sys.maxsize) or None
    bar = tqdm(
        total=total, desc=f"track {source.name}", unit="frame", disable=not sys.stderr.isatty(), leave=False
    )
    track_seconds, start, complete = 0.0, time.perf_counter(), True
    try:
        for frame in source.frames():
            if max_frames and frame.index >= max_frames:
                complete = False
                break
            tick = time.perf_counter()
            if frame.index == 0:
                tracker.initialize(frame.image, box)
                found, confidence = np.asarray(box, dtype=np.float64), math.nan
            else:
                found, confidence = tracker.track(frame.image)
                track_seconds += time.perf_counter() - tick
            boxes.append(found)
            confidences.append(confidence)
            times.append(frame.time)
            label, caption = confidence_label(confidence), _caption(frame.index, frame.time)
            if writer is not None:
                writer.write(annotate(frame.image, [(found, TRACKER)], box_label=label, caption=caption))
            if excerpt.wants(frame.index):
                small, scale = fit(frame.image, PREVIEW_SIDE)
                excerpt.add(
                    frame.index,
                    annotate(small, [(scaled(found, scale), TRACKER)], box_label=label, caption=caption),
                )
            bar.update(1)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    seconds = time.perf_counter() - start
    files = _write_outputs(
        out_dir, np.array(boxes), np.array(confidences), np.array(times), excerpt, source.fps
    )
    if writer is not None:
        files.insert(2, writer.path)
    return TrackedVideo(
        np.array(boxes),
        np.array(confidences),
        np.array(times),
        list(tracker.updates),
        track_seconds,
        seconds,
        complete,
        files,
    )


def _write_outputs(
    out_dir: Path, boxes: np.ndarray, confidences: np.ndarray, times: np.ndarray, excerpt: Excerpt, fps: float
) -> list[Path]:
    """boxes.txt, boxes.csv and preview.gif (the video is written as the frames go)."""
    txt = write_result_file(boxes, out_dir / "boxes.txt")
    table = out_dir / "boxes.csv"
    with table.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["frame", "time_s", "x", "y", "w", "h", "confidence"])
        for index, (b, t, c) in enumerate(zip(boxes, times, confidences, strict=True)):
            writer.writerow(
                [index, f"{t:.3f}", *(f"{v:.2f}" for v in b), "" if math.isnan(c) else f"{c:.4f}"]
            )
    frame_ms = round(min(max(1000 * excerpt.stride / fps, PREVIEW_MS[0]), PREVIEW_MS[1]))
    gif = write_gif([im for _, im in excerpt.kept], out_dir / "preview.gif", frame_ms)
    return [txt, table, gif]


__all__ = ["PREVIEW_FRAMES", "TrackedVideo", "check_first_box", "track_video"]
