"""The classical baselines' process pool: what a process costs to start, and the demo's baselines end to end.

Two pools track the same sequences with KCF, CSRT and MIL (`evaluation/baseline_pool.py`, one
single-threaded process per core, started by `forkserver`): `torch-free` as evaluate runs it (each
process imports `baseline_pool`: OpenCV, PIL, numpy), and `with torch` whose processes also import
`evaluation/baseline_scores.py` first (torch, the tracker, the scoring), which is what each process
imported while the pool lived there. Same process, same data, alternating rounds.

    python benchmarks/baseline_pool.py            # the demo's 8 seed-8 test sequences of 100 frames
    python benchmarks/baseline_pool.py --quick    # seconds: 2 sequences of 20 frames

Heavy imports stay inside `main()`: `forkserver` imports this script in its server process, whose
modules every pool process inherits, so a torch import at the top would hide the cost measured here.
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

WITH_TORCH_MODULE = "seqtrack_mlflow.evaluation.baseline_scores"  # imports torch through evaluation.results


def _import_with_torch() -> None:
    importlib.import_module(WITH_TORCH_MODULE)
    from seqtrack_mlflow.evaluation import baseline_pool

    baseline_pool._one_opencv_thread()


def _ready(_: int) -> int:
    return os.getpid()


def _pool_start_seconds(workers: int, with_torch: bool) -> float:
    """Seconds for a fresh pool to run a no-op per process and shut down: every process started has
    run its initializer (its imports) before the pool joins it."""
    from seqtrack_mlflow.evaluation import baseline_pool

    init = _import_with_torch if with_torch else baseline_pool._one_opencv_thread
    context = multiprocessing.get_context("forkserver")
    begin = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=context, initializer=init) as pool:
        list(pool.map(_ready, range(workers)))
    return time.perf_counter() - begin


def _track_seconds(names: tuple[str, ...], sequences: list, with_torch: bool) -> float:
    """The demo's baselines on `sequences` through `track_baselines`, its pool's imports included."""
    from seqtrack_mlflow.evaluation import baseline_pool

    original = baseline_pool._one_opencv_thread
    if with_torch:  # the pool's initializer is looked up at call time
        baseline_pool._one_opencv_thread = _import_with_torch
    try:
        begin = time.perf_counter()
        baseline_pool.track_baselines(names, sequences, [s.num_frames for s in sequences])
        return time.perf_counter() - begin
    finally:
        baseline_pool._one_opencv_thread = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 sequences of 20 frames, 1 round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per variant")
    args = parser.parse_args()

    import torch
    from common import markdown_table, median, print_header

    from seqtrack_mlflow.datasets.lasot import LASOT_CLASSES, read_sequence
    from seqtrack_mlflow.datasets.selection import resolve_classes
    from seqtrack_mlflow.datasets.synthetic import generate_lasot

    if "forkserver" not in multiprocessing.get_all_start_methods():
        raise SystemExit("this benchmark needs the forkserver start method (Linux or macOS)")
    seed, count, frames = (8, 2, 20) if args.quick else (8, 20, 100)
    rounds = 1 if args.quick else args.rounds
    names = ("kcf", "csrt", "mil")
    workers = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="baseline_pool_") as tmp:
        classes = resolve_classes("airplane,random", LASOT_CLASSES, seed)
        folders = generate_lasot(Path(tmp), classes, count, frames, (320, 240), seed)
        sequences = [s for s in map(read_sequence, folders) if s.split == "test"]
        n_frames = sum(s.num_frames for s in sequences)
        print_header(
            "Classical baselines' process pool",
            torch.device("cpu"),
            [
                f"{len(sequences)} synthetic test sequences ({n_frames} frames, 320x240, seed {seed}), "
                f"{', '.join(n.upper() for n in names)}; {workers} processes; {rounds} alternating round(s)",
            ],
        )
        start = {False: [], True: []}
        track = {False: [], True: []}
        for _ in range(rounds):
            for with_torch in (True, False):
                start[with_torch].append(_pool_start_seconds(workers, with_torch))
                track[with_torch].append(_track_seconds(names, sequences, with_torch))
    rows = [
        ["with torch (before)", f"{median(start[True]):.2f}", f"{median(track[True]):.1f}"],
        ["torch-free (now)", f"{median(start[False]):.2f}", f"{median(track[False]):.1f}"],
    ]
    print(markdown_table(["pool processes import", "pool start s", "baselines s"], rows))
    print(
        f"\npool start {median(start[True]) / median(start[False]):.1f}x faster; the baselines "
        f"{median(track[True]) - median(track[False]):.1f} s shorter"
    )


if __name__ == "__main__":
    main()
