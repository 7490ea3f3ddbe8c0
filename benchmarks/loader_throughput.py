"""Data pipeline throughput: training samples through the loader's slots, then model_inputs.

Frames are synthetic 1280x720 JPEG sequences in the LaSOT layout (datasets/synthetic.py), written to a
temporary folder. LaSOT's frames are ~100-150 KB each at 1280x720 (estimated from its class archives);
the synthetic generator writes ~100 KB frames, and the `--frame-kb` cases re-encode the same frames with
fixed-seed per-pixel noise (natural-image-like sensor grain) until the mean file size reaches the target,
150 KB by default. Each case iterates one epoch of --samples samples; the first batch from every worker
is excluded (process start-up), so samples/s is the steady state. "per worker" divides by the worker
count (the main process counts as one worker with 0 workers).

"decode-only" is the rate of merely decoding each sample's distinct full frames with PIL (the same
draws, in this process): what a loader that decodes whole frames cannot beat. "ratio" = loader
per-worker samples/s / decode-only samples/s. A shared machine's speed drifts by tens of percent within
a minute, so each case runs `--rounds` pairs of (decode-only pass, loader epoch) back to back, each
ratio against the pass right before it, and reports the medians. The consumer (main process) runs
with cores - workers torch threads (at least 1; `--threads` overrides): with all of them, its
parallel regions preempt the workers on a small machine.

`--decoder` runs the loader with each JPEG decoder of `inputs/jpeg.py`: `region` (the default where the
C extension is built: decodes only the rows and columns each crop reads, DCT-scaled where the crop
shrinks the frame 2x or more) and `pil` (the fallback: the whole frame, DCT-scaled, then PIL's affine
crop). Both cut the same crops, to the bit. Workers send uint8 crops; `photometric.model_inputs`
(grayscale, brightness, ImageNet normalisation) runs on each batch in the consuming process on
`--device`, as the trainer does: counted in samples/s, and its own time per sample is the "trainer
ms" column (with workers it runs beside them, on the trainer's core or GPU).

    python benchmarks/loader_throughput.py            # defaults: a few minutes on 2 CPU cores
    python benchmarks/loader_throughput.py --quick    # seconds: checks the script runs
    python benchmarks/loader_throughput.py --samples 800 --workers 0,1,2,4 --frame-kb 0,150,250
    python benchmarks/loader_throughput.py --device cuda   # the trainer-side step on the GPU
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import (
    add_threads_arg,
    cpu_model,
    markdown_table,
    print_header,
    resolve_device,
    sync,
    verdict,
)
from PIL import Image

from seqtrack_mlflow.config import ModelConfig, SamplingConfig
from seqtrack_mlflow.datasets.lasot import read_sequence
from seqtrack_mlflow.datasets.synthetic import JPEG_QUALITY, generate_lasot
from seqtrack_mlflow.inputs import jpeg
from seqtrack_mlflow.inputs.batches import make_loader
from seqtrack_mlflow.inputs.photometric import model_inputs
from seqtrack_mlflow.inputs.sampling import TrainingSamples

TARGET_RATIO = 1.5  # loader per-worker samples/s at 256-px crops over decode-only (PIL, full frames)
FRAME_SIZE = (1280, 720)
CLASSES = ("airplane", "bicycle")


def _noisy(path: Path, sigma: float, seed: int) -> bytes:
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    noise = np.random.default_rng(seed).normal(0.0, sigma, pixels.shape).astype(np.float32)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def texture_frames(src: list[Path], dst_root: Path, src_root: Path, target_kb: float) -> float:
    """Copy the sequences under `dst_root` with every frame re-encoded with Gaussian noise whose sigma
    makes the first frames' mean size `target_kb` (bisection); returns the sigma."""
    probe = src[:: max(1, len(src) // 8)][:8]
    lo, hi = 0.0, 32.0
    for _ in range(8):
        sigma = 0.5 * (lo + hi)
        mean_kb = np.mean([len(_noisy(p, sigma, i)) for i, p in enumerate(probe)]) / 1000
        lo, hi = (sigma, hi) if mean_kb < target_kb else (lo, sigma)
    sigma = 0.5 * (lo + hi)
    for i, path in enumerate(src):
        out = dst_root / path.relative_to(src_root)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(_noisy(path, sigma, i))
    return sigma


def copy_annotations(src_root: Path, dst_root: Path) -> None:
    for path in src_root.rglob("*"):
        if path.is_file() and path.suffix != ".jpg":
            out = dst_root / path.relative_to(src_root)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(path.read_bytes())


def frame_paths(dataset: TrainingSamples, samples: int) -> list[list[Path]]:
    """Each sample's distinct frames (the loader decodes a frame drawn twice with one window once)."""
    paths = []
    for index in range(samples):
        draw = dataset.draw(index)
        seq = dataset.sequences[draw.sequence]
        paths.append([seq.frame_path(f) for f in sorted(set(draw.frames.tolist()))])
    return paths


def decode_only(paths: list[list[Path]]) -> float:
    """Samples/s of decoding each sample's full frames with PIL, nothing else."""
    start = time.perf_counter()
    for frames in paths:
        for path in frames:
            with Image.open(path) as img:
                img.load()
    return len(paths) / (time.perf_counter() - start)


def make_dataset(sequences: list, crop: int, samples: int) -> TrainingSamples:
    cfg = ModelConfig(template_size=crop, search_size=crop, patch_size=16)
    return TrainingSamples(sequences, cfg, SamplingConfig(), seed=0, samples_per_epoch=samples)


def run_case(
    dataset: TrainingSamples, workers: int, batch: int, device: torch.device
) -> tuple[float, float, float]:
    """(steady-state samples/s, trainer-side ms per sample, seconds to the first batch) for one loader
    configuration; each batch goes through `model_inputs` on `device`, as in the trainer."""
    loader = make_loader(dataset, batch_size=batch, workers=workers)
    skip = max(1, workers)  # one batch per worker: all of them are up and running
    start = time.perf_counter()
    first = mark = start
    counted, trainer_s = 0, 0.0
    for i, item in enumerate(loader):
        before = time.perf_counter()
        model_inputs(item, device)
        sync(device)
        now = time.perf_counter()
        if i == 0:
            first = now
        if i == skip - 1:
            mark = now
        elif i >= skip:
            counted += item["search"].shape[0]
            trainer_s += now - before
    end = time.perf_counter()
    rate = counted / (end - mark) if counted and end > mark else float("nan")
    return rate, trainer_s / max(counted, 1) * 1e3, first - start


def measure(
    dataset: TrainingSamples, samples: int, workers: int, batch: int, device: torch.device, rounds: int
) -> dict[str, float]:
    """`rounds` x (a decode-only pass, then a loader epoch), back to back: on a shared machine the speed
    drifts by tens of percent within a minute, so each loader epoch is compared with the decode-only
    pass right before it, and the medians are reported."""
    paths = frame_paths(dataset, samples)
    bases, rates, ratios, trainer, first = [], [], [], [], []
    for _ in range(rounds):
        bases.append(decode_only(paths))
        rate, trainer_ms, first_s = run_case(dataset, workers, batch, device)
        rates.append(rate)
        ratios.append(rate / max(workers, 1) / bases[-1])
        trainer.append(trainer_ms)
        first.append(first_s)
    return {
        "rate": float(np.median(rates)),
        "base": float(np.median(bases)),
        "ratio": float(np.median(ratios)),
        "trainer_ms": float(np.median(trainer)),
        "first": float(np.median(first)),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=0, help="samples per case (default 160; quick 40)")
    p.add_argument("--batch", type=int, default=8, help="loader batch size (default 8)")
    p.add_argument("--workers", default="", help="comma-separated worker counts (default 0,1,2; quick 0,1)")
    p.add_argument("--crops", default="256,128", help="crop sizes: b256's 256 and tiny's 128 (default)")
    p.add_argument("--sequences", type=int, default=0, help="sequences per class (default 2; quick 1)")
    p.add_argument("--frames", type=int, default=0, help="frames per sequence (default 60; quick 30)")
    p.add_argument(
        "--frame-kb",
        default="0,150",
        help="frame sets: 0 = generator frames (~100 KB), N = re-encoded with noise to ~N KB (default 0,150)",
    )
    p.add_argument(
        "--decoder",
        default="region,pil",
        help="JPEG decoders to run the loader with: region (the default path), pil (the fallback)",
    )
    p.add_argument("--rounds", type=int, default=0, help="decode-only/loader pairs (default 3; quick 1)")
    p.add_argument("--quick", action="store_true", help="few samples, 0 and 1 workers: a check that it runs")
    p.add_argument("--device", default="cpu", help="where model_inputs runs: cpu (default) | cuda | cuda:N")
    add_threads_arg(p, "the consumer's: cores - workers, at least 1")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    rounds = args.rounds or (1 if args.quick else 3)
    default = "region" if jpeg.AVAILABLE else "pil"  # the decoder a training run uses
    device = resolve_device(args.device)
    samples = args.samples or (40 if args.quick else 160)
    workers = [int(w) for w in (args.workers or ("0,1" if args.quick else "0,1,2")).split(",")]
    crops = [int(c) for c in args.crops.split(",")]
    decoders = [d.strip() for d in args.decoder.split(",")]
    frame_kb = [float(k) for k in args.frame_kb.split(",")]
    per_class = args.sequences or (1 if args.quick else 2)
    frames = args.frames or (30 if args.quick else 60)
    for name in decoders:
        if name not in jpeg.DECODERS:
            raise SystemExit(f"--decoder {name}: use {' or '.join(jpeg.DECODERS)}")
        if name == "region" and not jpeg.AVAILABLE:
            raise SystemExit(f"--decoder region: {jpeg.BUILD_HINT}")
    rows: list[list[object]] = []
    targets: dict[tuple[str, str], float] = {}
    cpu = cpu_model()
    with tempfile.TemporaryDirectory(prefix="seqtrack-bench-") as tmp:
        start = time.perf_counter()
        root = Path(tmp) / "kb0"
        dirs = generate_lasot(
            root, CLASSES, sequences_per_class=per_class, frames=frames, size=FRAME_SIZE, seed=0
        )
        generated = time.perf_counter() - start
        sets: list[tuple[str, list]] = []
        notes = []
        for kb in frame_kb:
            if kb <= 0:
                set_root, label = root, ""
            else:
                set_root = Path(tmp) / f"kb{kb:g}"
                copy_annotations(root, set_root)
                src = sorted(root.rglob("*.jpg"))
                sigma = texture_frames(src, set_root, root, kb)
                label = f" (noise sigma {sigma:.1f})"
            jpgs = sorted(set_root.rglob("*.jpg"))
            mean_kb = np.mean([p.stat().st_size for p in jpgs]) / 1000
            name = f"{mean_kb:.0f} KB"
            sequences = [read_sequence(set_root / d.relative_to(root)) for d in dirs]
            sets.append((name, sequences))
            notes.append(
                f"frame set '{name}': mean {mean_kb:.1f} KB per {FRAME_SIZE[0]}x{FRAME_SIZE[1]} frame{label}"
            )
        print_header(
            "Data pipeline throughput",
            device,
            [
                f"{len(dirs)} synthetic sequences of {frames} frames at {FRAME_SIZE[0]}x{FRAME_SIZE[1]} "
                f"JPEG quality {JPEG_QUALITY} (written in {generated:.1f} s); LaSOT: ~100-150 KB per frame",
                *notes,
                f"{samples} samples per case, batch {args.batch}; steady state (first batch of "
                "each worker excluded); 'first batch' includes worker start-up",
                "each sample = 2 template crops + 1 search crop from 3 frames (a frame drawn twice with "
                "the same window is decoded once)",
                f"{rounds} rounds per case of a decode-only pass (PIL decode of each sample's distinct full "
                "frames, in this process) then a loader epoch; ratio = loader per worker / the decode-only "
                "pass right before it; medians of the rounds",
                f"consumer threads: {args.threads or 'cores - workers (at least 1)'}; {cores} cores",
                f"trainer ms = model_inputs (uint8 -> normalised float32) per sample on {device}, in the "
                "consuming process: in samples/s at 0 workers, beside the workers otherwise",
            ],
        )
        for set_name, sequences in sets:
            for crop in crops:
                for w in workers:
                    # The consumer keeps to the cores the workers leave (a trainer on a GPU leaves
                    # them all): its threads would otherwise preempt a worker at every parallel region.
                    torch.set_num_threads(args.threads or max(1, cores - w))
                    for name in decoders:
                        jpeg.set_decoder(name)  # workers inherit it (environment variable)
                        dataset = make_dataset(sequences, crop, samples)
                        m = measure(dataset, samples, w, args.batch, device, rounds)
                        rows.append(
                            [
                                set_name,
                                crop,
                                name,
                                w,
                                f"{m['rate']:.1f}",
                                f"{m['rate'] / max(w, 1):.1f}",
                                f"{m['base']:.1f}",
                                f"{m['ratio']:.2f}x",
                                f"{m['trainer_ms']:.2f}",
                                f"{m['first']:.2f}",
                            ]
                        )
                        if crop == 256 and w == 1 and name == default:  # the fallback has no target
                            targets[(set_name, name)] = m["ratio"]
        jpeg.set_decoder(None)
    print(f"CPU: {cpu}\n")
    print(
        markdown_table(
            [
                "frames",
                "crop",
                "decoder",
                "workers",
                "samples/s",
                "per worker",
                "decode-only/s",
                "ratio",
                "trainer ms",
                "first batch s",
            ],
            rows,
        )
    )
    print()
    if not targets:
        print(f"target (crop 256, 1 worker, >= {TARGET_RATIO}x decode-only): not measured in this run")
    for (set_name, name), ratio in targets.items():
        print(
            f"target ({set_name} frames, crop 256, {name}, 1 worker >= {TARGET_RATIO}x decode-only): "
            f"{ratio:.2f}x -> {verdict(ratio >= TARGET_RATIO)}"
        )


if __name__ == "__main__":
    main()
