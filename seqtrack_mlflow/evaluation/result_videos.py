"""Results you can watch: `videos/<sequence>.gif` for the first few evaluated sequences, each frame with
the tracker's box (orange) and the ground truth (blue) and its IoU, so the MLflow UI shows where the
tracker loses the target. Drawn with `video.draw`, the look of `track`'s video. No MLflow here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from seqtrack_mlflow.datasets.base import Sequence
from seqtrack_mlflow.evaluation.metrics import iou
from seqtrack_mlflow.video.draw import TRACKER, TRUTH, annotate, fit, scaled
from seqtrack_mlflow.video.encode import write_gif

GIF_FRAMES = 32  # frames spread evenly over the tracked frames
GIF_SIDE = 240  # px, the longer side
GIF_BYTES = 300_000  # each; a few sequences stay around a megabyte in all
FRAME_MS = 150


def spread(count: int, size: int) -> list[int]:
    """At most `size` frame indices spread evenly over `count` frames, the first and last included."""
    if count <= size:
        return list(range(count))
    return sorted({round(i * (count - 1) / (size - 1)) for i in range(size)})


def sequence_gif(seq: Sequence, boxes: np.ndarray, path: Path) -> Path:
    """The GIF of one sequence: `boxes` (N, 4), the tracker's, for its first N frames."""
    overlaps = iou(boxes, seq.boxes[: len(boxes)])
    frames = []
    for index in spread(len(boxes), GIF_FRAMES):
        with Image.open(seq.frame_path(index)) as img:
            small, scale = fit(img.convert("RGB"), GIF_SIDE)
        visible = bool(seq.visible[index])
        truth = [(scaled(seq.boxes[index], scale), TRUTH)] if visible else []
        caption = (
            f"{index + 1}/{seq.num_frames}  IoU {overlaps[index]:.2f}"
            if visible
            else f"{index + 1}  not visible"
        )
        frames.append(annotate(small, [(scaled(boxes[index], scale), TRACKER), *truth], caption=caption))
    return write_gif(frames, path, FRAME_MS, GIF_BYTES)


def write_result_videos(
    sequences: list[Sequence], results_dir: Path, out_dir: Path, count: int
) -> list[Path]:
    """`out_dir/<seq>.gif` for the first `count` of `sequences`, from their `results_dir/<seq>.txt`."""
    written = []
    for seq in sequences[: max(count, 0)]:
        boxes = np.loadtxt(results_dir / f"{seq.name}.txt", delimiter=",", ndmin=2)
        written.append(sequence_gif(seq, boxes, out_dir / f"{seq.name}.gif"))
    return written


__all__ = ["sequence_gif", "spread", "write_result_videos"]
