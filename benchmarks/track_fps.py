"""Tracking speed: evaluation frames/s vs batch size and precision; whole frames per second, and the
greedy box decode alone, with the key/value-cached decoder (use_cache=True) and the official way
(use_cache=False: the full prefix re-run at every step).

Evaluation throughput (`track_sequences`, what `evaluate` runs with -P eval_batch / eval_precision):
--eval-sequences synthetic sequences tracked for --eval-frames frames each, at every batch size and
precision; frames/s = all tracked frames / total tracking time (frame decoding included), and the
speed-up is against fp32 at batch 1 measured in the same run (cases interleaved round by round, so
both see the same load). "same boxes as batch 1" compares each batched case with batch 1 of its
precision (exact equality); "max box diff vs fp32" is the largest coordinate difference in pixels
(random weights: it shows the precision's effect on boxes, not on accuracy).

Models are randomly initialised (no download) and in eval mode; the sequence is synthetic 1280x720
JPEG (datasets/synthetic.py). Whole-frame fps is `track_sequence`'s (JPEG decode + crop + encoder + decode
+ box mapping, initialisation excluded). The decode-alone timing runs `decode_greedy` on one fixed
encoder memory (batch 1, window penalty on), cached and uncached calls interleaved; the encoder
dominates whole frames, so this is where the two decoders differ measurably.

    python benchmarks/track_fps.py            # defaults: several minutes on 2 CPU cores
    python benchmarks/track_fps.py --quick    # seconds: checks the script runs
    python benchmarks/track_fps.py --parts eval --eval-preset b256 --batches 1,4 --precisions fp32,int8,bf16
    python benchmarks/track_fps.py --device cuda    # GPU: batches 1,8,32, precisions fp32,bf16
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import (
    add_run_args,
    markdown_table,
    median,
    print_header,
    start,
    sync,
    verdict,
)

from seqtrack_mlflow.config import ConfigError, ModelConfig, TrackerConfig, preset
from seqtrack_mlflow.datasets.lasot import read_sequence
from seqtrack_mlflow.datasets.synthetic import generate_lasot
from seqtrack_mlflow.evaluation.tracker import SeqTrackTracker, track_sequence, track_sequences
from seqtrack_mlflow.model.factory import build_model
from seqtrack_mlflow.model.flops import encoder_macs, greedy_decode_macs
from seqtrack_mlflow.model.seqtrack import SeqTrack
from seqtrack_mlflow.model.tokens import hann_window

FRAME_SIZE = (1280, 720)
TARGET_SPEEDUP = 1.6  # reduced precision at batch 1 vs fp32 at batch 1, CPU


def model_for(name: str, device: torch.device) -> SeqTrack:
    cfg, _ = preset(name)
    torch.manual_seed(0)
    return build_model(dataclasses.replace(cfg, pretrained="none")).to(device).eval()


def whole_frames(
    model: SeqTrack, seq, frames: int, rounds: int, device: torch.device
) -> tuple[float, float, bool]:
    """(fps cached, fps uncached, same boxes), medians over `rounds` alternating runs."""
    fps: dict[bool, list[float]] = {True: [], False: []}
    boxes: dict[bool, np.ndarray] = {}
    for _ in range(rounds):
        for use_cache in (True, False):
            tracker = SeqTrackTracker(model, TrackerConfig(), device, use_cache=use_cache)
            boxes[use_cache], rate = track_sequence(tracker, seq, max_frames=frames)
            fps[use_cache].append(rate)
    same = bool(np.allclose(boxes[True], boxes[False], atol=1e-3))
    return median(fps[True]), median(fps[False]), same


def decode_alone(model: SeqTrack, reps: int, device: torch.device) -> tuple[float, float]:
    """(seconds cached, seconds uncached) per decode_greedy call on a fixed memory, median of `reps`."""
    cfg: ModelConfig = model.cfg
    gen = torch.Generator().manual_seed(0)
    t, s = cfg.template_size, cfg.search_size
    templates = torch.randn(1, cfg.num_templates, 3, t, t, generator=gen).to(device)
    search = torch.randn(1, 3, s, s, generator=gen).to(device)
    window = hann_window(cfg.bins).to(device)
    times: dict[bool, list[float]] = {True: [], False: []}
    with torch.inference_mode():
        memory = model.encode(templates, search)
        for use_cache in (True, False):  # warm-up
            model.decode_greedy(memory, window, use_cache=use_cache)
        for _ in range(reps):
            for use_cache in (True, False):
                sync(device)
                start = time.perf_counter()
                model.decode_greedy(memory, window, use_cache=use_cache)
                sync(device)
                times[use_cache].append(time.perf_counter() - start)
    return median(times[True]), median(times[False])


def evaluation_cases(
    model: SeqTrack,
    sequences: list,
    frames: int,
    batches: list[int],
    precisions: list[str],
    rounds: int,
    device: torch.device,
) -> tuple[list[list[object]], dict[str, float]]:
    """Rows of the evaluation table and {precision: speed-up at batch 1 vs fp32 batch 1}."""
    trackers: dict[str, SeqTrackTracker | str] = {}
    for precision in precisions:
        try:
            trackers[precision] = SeqTrackTracker(model, TrackerConfig(eval_precision=precision), device)
        except ConfigError as exc:  # no kernels for it here: one line in the table
            trackers[precision] = str(exc)
    cases = [(p, b) for p in precisions if not isinstance(trackers[p], str) for b in batches]
    rates: dict[tuple[str, int], list[float]] = {case: [] for case in cases}
    boxes: dict[tuple[str, int], list[np.ndarray]] = {}
    tracked = len(sequences) * (frames - 1)
    for _ in range(rounds):
        for precision, batch in cases:
            tracker = trackers[precision]
            sync(device)
            begin = time.perf_counter()
            out = track_sequences(tracker, sequences, frames, batch)
            sync(device)
            rates[(precision, batch)].append(tracked / (time.perf_counter() - begin))
            boxes[(precision, batch)] = [b for b, _ in out]
    base = ("fp32", 1)
    fps = {case: median(v) for case, v in rates.items()}
    rows: list[list[object]] = []
    speedups: dict[str, float] = {}
    for precision in precisions:
        if isinstance(trackers[precision], str):
            rows.append([precision, "-", "-", "-", "-", "-", f"refused: {trackers[precision]}"])
            continue
        for batch in batches:
            case = (precision, batch)
            ratio = fps[case] / fps[base] if base in fps else float("nan")
            if batch == 1:
                speedups[precision] = ratio
            same = boxes.get((precision, 1))
            identical = "-" if batch == 1 or same is None else _same(boxes[case], same)
            ref = boxes.get(base)
            diff = (
                "-"
                if ref is None
                else f"{max(float(np.abs(a - r).max()) for a, r in zip(boxes[case], ref, strict=True)):.2f}"
            )
            rows.append([precision, batch, tracked, f"{fps[case]:.3f}", f"{ratio:.2f}x", identical, diff])
    return rows, speedups


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> str:
    return "yes" if all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)) else "NO"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default="tiny,b256", help="comma-separated presets (default tiny,b256)")
    p.add_argument(
        "--frames",
        type=int,
        default=0,
        help="frames tracked per run (default CPU: tiny 30, b256 6; GPU 100; quick 8 / 3)",
    )
    p.add_argument("--rounds", type=int, default=0, help="alternating runs per decoder (default 2; quick 1)")
    p.add_argument("--reps", type=int, default=0, help="decode_greedy calls per mode (default 100; quick 20)")
    p.add_argument(
        "--parts", default="eval,frames", help="eval (batch x precision), frames (decoders); default both"
    )
    p.add_argument(
        "--eval-preset", default="", help="preset of the evaluation table (default CPU tiny quick/b256)"
    )
    p.add_argument("--batches", default="", help="comma-separated batch sizes (default CPU 1,4; GPU 1,8,32)")
    p.add_argument(
        "--precisions",
        default="",
        help="comma-separated of fp32,int8,bf16 (default CPU all three; GPU fp32,bf16)",
    )
    p.add_argument(
        "--eval-frames", type=int, default=0, help="frames per sequence (default CPU 3; GPU 50; quick 2)"
    )
    p.add_argument(
        "--eval-sequences",
        type=int,
        default=0,
        help="sequences tracked per case (default: the largest batch)",
    )
    add_run_args(p, "few frames and reps: a check that it runs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = start(args)
    gpu = device.type == "cuda"
    parts = {x.strip() for x in args.parts.split(",") if x.strip()}
    unknown = parts - {"eval", "frames"}
    if unknown:
        raise SystemExit(f"--parts: unknown part {sorted(unknown)[0]!r}, use eval and/or frames")
    presets = [p.strip() for p in args.presets.split(",") if p.strip()] if "frames" in parts else []
    rounds = args.rounds or (1 if args.quick else 2)
    reps = args.reps or (20 if args.quick else 100)
    eval_preset = args.eval_preset or ("tiny" if args.quick and not gpu else "b256")
    batches = [int(b) for b in (args.batches or ("1,8,32" if gpu else "1,4")).split(",") if b.strip()]
    if not batches or min(batches) < 1:
        raise SystemExit("--batches: give batch sizes of 1 or more")
    if 1 not in batches:
        batches.insert(0, 1)  # the reference: fp32 at batch 1
    precisions = [
        x.strip() for x in (args.precisions or ("fp32,bf16" if gpu else "fp32,int8,bf16")).split(",")
    ]
    if "fp32" not in precisions:
        precisions.insert(0, "fp32")
    eval_frames = args.eval_frames or (2 if args.quick else (50 if gpu else 3))
    eval_sequences = args.eval_sequences or max(batches)

    def frames_for(name: str) -> int:
        if args.frames:
            return args.frames
        if gpu:
            return 100
        big = name != "tiny"
        return (3 if big else 8) if args.quick else (6 if big else 30)

    length = max([frames_for(name) for name in presets] + [eval_frames, 2])
    frame_rows: list[list[object]] = []
    decode_rows: list[list[object]] = []
    eval_rows: list[list[object]] = []
    speedups: dict[str, float] = {}
    all_met = True
    with tempfile.TemporaryDirectory(prefix="seqtrack-bench-") as tmp:
        dirs = generate_lasot(
            Path(tmp),
            ["airplane"],
            sequences_per_class=max(eval_sequences, 1),
            frames=length,
            size=FRAME_SIZE,
            seed=0,
        )
        sequences = [read_sequence(d) for d in dirs]
        seq = sequences[0]
        print_header(
            "Tracking speed",
            device,
            [
                f"synthetic {FRAME_SIZE[0]}x{FRAME_SIZE[1]} JPEG sequences; random weights",
                f"evaluation: {eval_preset}, {eval_sequences} sequences x {eval_frames} frames per case "
                f"({eval_frames - 1} tracked each); frames/s = median of {rounds} round(s), cases "
                "interleaved; speed-up vs fp32 batch 1 of the same run",
                f"whole frames: batch 1; fps = median of {rounds} alternating run(s) per decoder",
                f"decode alone: median of {reps} interleaved decode_greedy calls on a fixed memory",
                "MMAC = million multiply-accumulates (model/flops.py)",
            ],
        )
        if "eval" in parts:
            model = model_for(eval_preset, device)
            eval_rows, speedups = evaluation_cases(
                model, sequences[:eval_sequences], eval_frames, batches, precisions, rounds, device
            )
            del model
        for name in presets:
            model = model_for(name, device)
            frames = frames_for(name)
            fps_cached, fps_full, same = whole_frames(model, seq, frames, rounds, device)
            frame_rows.append(
                [
                    name,
                    frames,
                    f"{fps_cached:.2f}",
                    f"{fps_full:.2f}",
                    f"{fps_cached / fps_full:.3f}x",
                    "yes" if same else "NO",
                ]
            )
            t_cached, t_full = decode_alone(model, reps, device)
            met = t_cached <= t_full
            all_met &= met
            cfg = model.cfg
            decode_rows.append(
                [
                    name,
                    f"{sum(encoder_macs(cfg).values()) / 1e6:,.0f}",
                    f"{greedy_decode_macs(cfg, True) / 1e6:.1f}",
                    f"{greedy_decode_macs(cfg, False) / 1e6:.1f}",
                    f"{t_cached * 1e3:.2f}",
                    f"{t_full * 1e3:.2f}",
                    f"{t_full / t_cached:.2f}x",
                    verdict(met),
                ]
            )
            del model
    if "eval" in parts:
        print(f"Evaluation throughput ({eval_preset}, track_sequences)\n")
        print(
            markdown_table(
                [
                    "precision",
                    "batch",
                    "frames",
                    "frames/s",
                    "vs fp32 batch 1",
                    "same boxes as batch 1",
                    "max box diff vs fp32 (px)",
                ],
                eval_rows,
            )
        )
        print()
        reduced = {k: v for k, v in speedups.items() if k != "fp32"}
        if gpu or not reduced:
            print("target (int8 or bf16 >= 1.6x fp32 frames/s at batch 1, CPU): not measured in this run")
        else:
            best = max(reduced, key=reduced.get)
            print(
                f"target (int8 or bf16 >= {TARGET_SPEEDUP}x fp32 frames/s at batch 1, CPU): {best} "
                f"{reduced[best]:.2f}x -> {verdict(reduced[best] >= TARGET_SPEEDUP)}"
            )
        if "frames" in parts:
            print()
    if "frames" in parts:
        print("Whole frames\n")
        print(
            markdown_table(
                ["preset", "frames", "fps cached", "fps full prefix", "cached speed-up", "same boxes"],
                frame_rows,
            )
        )
        print("\nBox decode alone (4 greedy steps)\n")
        print(
            markdown_table(
                [
                    "preset",
                    "encoder MMAC",
                    "decode MMAC cached",
                    "decode MMAC full",
                    "ms cached",
                    "ms full prefix",
                    "cached speed-up",
                    "cached <= full",
                ],
                decode_rows,
            )
        )
        print()
        print(f"target (cached decode never slower than re-running the prefix): {verdict(all_met)}")


if __name__ == "__main__":
    main()
