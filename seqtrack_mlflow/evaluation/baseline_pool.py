"""The classical baselines' boxes on many sequences at once, over a process pool.

OpenCV's MIL and CSRT are slow (about 20 and 60 frames/s on the demo's 320x240 frames here; KCF 600),
so the sequences are spread over a process pool, one single-threaded process per core: the same boxes
as tracking them one after the other (each sequence seeds its own `rand()`, `baselines.py`); the
demo's 8 test sequences take about 27 s on 2 cores instead of 52 s in one process. The pool's processes
start from a fresh interpreter (`forkserver`), never a fork of this one, whose threads (PyTorch's,
MLflow's) may hold locks. A fresh process imports the module of the function it runs: this one imports
OpenCV, PIL and numpy only (no torch, no MLflow), so a pool of two starts in 0.3 s instead of the 6 s
it took when each process imported torch (`benchmarks/baseline_pool.py`).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image

from seqtrack_mlflow.datasets.base import DECODE_ERRORS, Sequence, frame_error
from seqtrack_mlflow.evaluation.baselines import opencv, track_together


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
