"""Data pipeline throughput: TrainingSamples + make_loader (JPEG decode, crop, jitter, augment, collate).

Frames are synthetic 1280x720 JPEG sequences in the LaSOT layout (data/synthetic.py), written to a
temporary folder. Each case iterates one epoch of --samples samples; the first batch from every worker
is excluded (process start-up), so samples/s is the steady state. "per worker" divides by the worker
count (the main process counts as one worker with 0 workers). Reduced decode is TrainingSamples'
`reduced_decode` switch: JPEG DCT scaling to 1/2, 1/4 or 1/8 when the crop shrinks the frame that much.

    python benchmarks/loader_throughput.py            # defaults: about a minute on 2 CPU cores
    python benchmarks/loader_throughput.py --quick    # seconds: checks the script runs
    python benchmarks/loader_throughput.py --samples 800 --workers 0,1,2,4
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from common import add_threads_arg, apply_threads, markdown_table, print_header, verdict

from seqtrack_mlflow.config import ModelConfig, SamplingConfig
from seqtrack_mlflow.data.lasot import read_sequence
from seqtrack_mlflow.data.sampling import TrainingSamples, make_loader
from seqtrack_mlflow.data.synthetic import generate_lasot

TARGET_PER_WORKER = 50.0  # samples/s per worker on 1280x720 frames, b256 crops, default decoding
FRAME_SIZE = (1280, 720)
CLASSES = ("airplane", "bicycle")


def run_case(
    sequences: list, crop: int, reduced: bool, workers: int, samples: int, batch: int
) -> tuple[float, float]:
    """(steady-state samples/s, seconds to the first batch) for one loader configuration."""
    cfg = ModelConfig(template_size=crop, search_size=crop, patch_size=16)
    dataset = TrainingSamples(
        sequences, cfg, SamplingConfig(), seed=0, samples_per_epoch=samples, reduced_decode=reduced
    )
    loader = make_loader(dataset, batch_size=batch, workers=workers)
    skip = max(1, workers)  # one batch per worker: all of them are up and running
    start = time.perf_counter()
    first = mark = start
    counted = 0
    for i, item in enumerate(loader):
        now = time.perf_counter()
        if i == 0:
            first = now
        if i == skip - 1:
            mark = now
        elif i >= skip:
            counted += item["search"].shape[0]
    end = time.perf_counter()
    rate = counted / (end - mark) if counted and end > mark else float("nan")
    return rate, first - start


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=0, help="samples per case (default 160; quick 40)")
    p.add_argument("--batch", type=int, default=8, help="loader batch size (default 8)")
    p.add_argument("--workers", default="", help="comma-separated worker counts (default 0,1,2; quick 0,1)")
    p.add_argument("--crops", default="256,128", help="crop sizes: b256's 256 and tiny's 128 (default)")
    p.add_argument("--sequences", type=int, default=0, help="sequences per class (default 2; quick 1)")
    p.add_argument("--frames", type=int, default=0, help="frames per sequence (default 60; quick 30)")
    p.add_argument("--quick", action="store_true", help="few samples, 0 and 1 workers: a check that it runs")
    add_threads_arg(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    apply_threads(args.threads)
    samples = args.samples or (40 if args.quick else 160)
    workers = [int(w) for w in (args.workers or ("0,1" if args.quick else "0,1,2")).split(",")]
    crops = [int(c) for c in args.crops.split(",")]
    per_class = args.sequences or (1 if args.quick else 2)
    frames = args.frames or (30 if args.quick else 60)
    rows: list[list[object]] = []
    target: float | None = None
    with tempfile.TemporaryDirectory(prefix="seqtrack-bench-") as tmp:
        start = time.perf_counter()
        dirs = generate_lasot(
            Path(tmp), CLASSES, sequences_per_class=per_class, frames=frames, size=FRAME_SIZE, seed=0
        )
        generated = time.perf_counter() - start
        sequences = [read_sequence(d) for d in dirs]
        print_header(
            "Data pipeline throughput",
            torch.device("cpu"),
            [
                f"{len(sequences)} synthetic sequences of {frames} frames at {FRAME_SIZE[0]}x{FRAME_SIZE[1]} "
                f"JPEG (written in {generated:.1f} s)",
                f"{samples} samples per case, batch {args.batch}; steady state (first batch of "
                "each worker excluded); 'first batch' includes worker start-up",
                "each sample = 2 template crops + 1 search crop from 3 frames (a frame drawn twice is "
                "decoded once)",
            ],
        )
        for crop in crops:
            for reduced in (True, False):
                for w in workers:
                    rate, first = run_case(sequences, crop, reduced, w, samples, args.batch)
                    per_worker = rate / max(w, 1)
                    met = verdict(per_worker >= TARGET_PER_WORKER)
                    decode = "reduced" if reduced else "full"
                    rows.append([crop, decode, w, f"{rate:.1f}", f"{per_worker:.1f}", f"{first:.2f}", met])
                    if crop == 256 and reduced and w == 1:
                        target = per_worker
    print(
        markdown_table(
            [
                "crop",
                "JPEG decode",
                "workers",
                "samples/s",
                "per worker",
                "first batch s",
                f">= {TARGET_PER_WORKER:.0f}/worker",
            ],
            rows,
        )
    )
    print()
    if target is None:
        print("target (crop 256, reduced decode, 1 worker >= 50 samples/s): not measured in this run")
    else:
        print(
            f"target (crop 256, reduced decode, 1 worker >= {TARGET_PER_WORKER:.0f} samples/s): "
            f"{target:.1f} -> {verdict(target >= TARGET_PER_WORKER)}"
        )


if __name__ == "__main__":
    main()
