"""The classical baselines scored beside the model: the same sequences, the same frames (max_frames
included), the same first box and the same LaSOT metrics, added to the model's `Scores` as metrics
`baseline.<name>.<metric>`, a per-sequence column `<name>_auc` and curves on the same plots.

OpenCV's MIL and CSRT are slow (about 20 and 60 frames/s on the demo's 320x240 frames here; KCF 600),
so the sequences are spread over a process pool, one single-threaded process per core: the same boxes
as tracking them one after the other (each sequence seeds its own `rand()`, `baselines.py`); the
demo's 8 test sequences took 33 s instead of 52 s on 2 cores. The pool's processes start from a fresh
interpreter (`forkserver`), never a fork of this one, whose threads (PyTorch's, MLflow's) may hold
locks."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image

from seqtrack_mlflow.datasets.base import DECODE_ERRORS, Sequence, frame_error
from seqtrack_mlflow.evaluation.baselines import opencv, track_together
from seqtrack_mlflow.evaluation.metrics import sequence_curves, summarize
from seqtrack_mlflow.evaluation.results import HEADLINE, Scores


def with_baselines(scores: Scores, sequences: list[Sequence], names: tuple[str, ...]) -> Scores:
    """`scores` (the model's on `sequences`) with the baselines `names` tracked and scored on the frames
    the model tracked: each row's `frames` from frame 1's ground-truth box."""
    if not names:
        return scores
    curves: dict[str, list[dict]] = {name: [] for name in names}
    rows = []
    tracked_all = track_baselines(names, sequences, [row["frames"] for row in scores.rows])
    for seq, row, tracked in zip(sequences, scores.rows, tracked_all, strict=True):
        n = row["frames"]
        row = dict(row)
        for name, boxes in tracked.items():
            curve = sequence_curves(boxes, seq.boxes[:n], seq.visible[:n])
            curves[name].append(curve)
            row[f"{name}_auc"] = float(summarize([curve])["auc"])
        rows.append(row)
    metrics = dict(scores.metrics)
    for name, cs in curves.items():
        overall = summarize(cs)
        metrics.update({f"baseline.{name}.{k}": float(overall[k]) for k in HEADLINE})
    references = {**scores.references, **{name.upper(): cs for name, cs in curves.items()}}
    return dataclasses.replace(scores, metrics=metrics, rows=rows, references=references)


def baselines_line(metrics: dict[str, float], names: tuple[str, ...]) -> str:
    """The one console line comparing the model's AUC with the baselines' (and keeping the first box)."""
    theirs = "  ".join(f"{name.upper()} {metrics[f'baseline.{name}.auc']:.2f}" for name in names)
    return (
        f"AUC: SeqTrack {metrics['auc']:.2f} | OpenCV baselines {theirs} | first box "
        f"{metrics['first_box_auc']:.2f}  (same frames, same first box)"
    )


def track_baselines(
    names: tuple[str, ...], sequences: list[Sequence], counts: list[int]
) -> list[dict[str, np.ndarray]]:
    """The baselines' boxes on each sequence's first `counts[i]` frames, sequences spread over the cores
    (also the time-to-accuracy benchmark's references)."""
    workers = min(len(sequences), os.cpu_count() or 1)
    if workers <= 1:
        return [_track_sequence(names, seq, n) for seq, n in zip(sequences, counts, strict=True)]
    fresh = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"  # (Windows)
    context = multiprocessing.get_context(fresh)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_opencv_thread) as pool:
        return list(pool.map(_track_sequence, [names] * len(sequences), sequences, counts))


def _one_opencv_thread() -> None:
    """A pool process keeps to its core: OpenCV's own threads only slow MIL down (measured on a
    100-frame sequence here: 5.2 s and 8.1 CPU-s with 2 threads, 4.4 s and 4.4 CPU-s with 1)."""
    opencv().setNumThreads(1)


def _track_sequence(names: tuple[str, ...], seq: Sequence, n: int) -> dict[str, np.ndarray]:
    return track_together(names, _rgb_frames(seq, n), seq.boxes[0])


def _rgb_frames(seq: Sequence, n: int) -> Iterator[np.ndarray]:
    """Frames 1..n of `seq` as RGB uint8, decoded with PIL like the tracker's."""
    for i in range(n):
        path = seq.frame_path(i)
        try:
            with Image.open(path) as img:
                yield np.asarray(img.convert("RGB"))
        except DECODE_ERRORS as exc:
            raise frame_error(path, exc) from None
