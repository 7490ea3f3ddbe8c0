"""Tracking speed: evaluation frames/s vs backend, precision and batch size; whole frames per second,
and the greedy box decode alone, with the key/value-cached decoder (use_cache=True) and the official
way (use_cache=False: the full prefix re-run at every step).

Evaluation throughput (`track_sequences`, what `evaluate` runs with -P eval_batch / eval_precision /
backend): --eval-sequences synthetic sequences tracked for --eval-frames frames each, for every backend
(torch: fp32, int8, bf16; onnxruntime: fp32, int8) and batch size; frames/s = all tracked frames /
total tracking time (frame decoding included), and the speed-up is against torch fp32 at batch 1
measured in the same run (cases interleaved round by round, so all see the same load, on the same
frames; each case first tracks one frame untimed, so no case pays the first call's set-up). "same
boxes as batch 1" compares each batched case with batch 1 of its backend and precision (exact
equality); "max box diff vs torch fp32" is the largest coordinate difference in pixels (random
weights: it shows the backend's or precision's effect on boxes, not on accuracy; the AUC is judged
with trained weights, README "Tracking speed").

Models are randomly initialised (no download) and in eval mode; the sequence is synthetic 1280x720
JPEG (datasets/synthetic.py). The onnxruntime rows run the graphs `export-onnx` writes (exported once
per run into a temporary folder). Whole-frame fps is `track_sequence`'s (JPEG decode + crop + encoder
+ decode + box mapping, initialisation excluded). The decode-alone timing runs `decode_greedy` on one
fixed encoder memory (batch 1, window penalty on), cached and uncached calls interleaved; the encoder
dominates whole frames, so this is where the two decoders differ measurably.

    python benchmarks/track_fps.py            # defaults: several minutes on 2 CPU cores
    python benchmarks/track_fps.py --quick    # seconds: checks the script runs
    python benchmarks/track_fps.py --parts eval --batches 1 --rounds 4   # the backends side by side
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
from seqtrack_mlflow.evaluation.onnx_runner import OnnxRunner, cached_export
from seqtrack_mlflow.evaluation.runners import BACKENDS, check_backend
from seqtrack_mlflow.evaluation.tracker import SeqTrackTracker, track_sequence, track_sequences
from seqtrack_mlflow.model.factory import build_model
from seqtrack_mlflow.model.flops import encoder_macs, greedy_decode_macs
from seqtrack_mlflow.model.seqtrack import SeqTrack
from seqtrack_mlflow.model.tokens import hann_window

FRAME_SIZE = (1280, 720)
TARGET_SPEEDUP = 1.6  # reduced precision at batch 1 vs fp32 at batch 1, CPU
TARGET_FASTEST = 2.5  # the fastest backend at batch 1 vs torch fp32 at batch 1, CPU


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


def make_trackers(
    model: SeqTrack, variants: list[tuple[str, str]], device: torch.device, export_root: Path
) -> dict[tuple[str, str], SeqTrackTracker | str]:
    """A tracker per (backend, precision), or the one-line reason it cannot run here. The onnx
    backend's graphs are exported once (into `export_root`, not the user's cache) and shared."""
    trackers: dict[tuple[str, str], SeqTrackTracker | str] = {}
    for backend, precision in variants:
        cfg = TrackerConfig(backend=backend, eval_precision=precision)
        try:
            check_backend(cfg, device)
            runner = None
            if backend == "onnx":
                runner = OnnxRunner(cached_export(model, export_root), precision, device)
            trackers[(backend, precision)] = SeqTrackTracker(model, cfg, device, runner=runner)
        except ConfigError as exc:  # no kernels or packages for it here: one line in the table
            trackers[(backend, precision)] = str(exc)
    return trackers


def evaluation_cases(
    trackers: dict[tuple[str, str], SeqTrackTracker | str],
    sequences: list,
    frames: int,
    batches: list[int],
    rounds: int,
    device: torch.device,
) -> tuple[list[list[object]], dict[tuple[str, str], float]]:
    """Rows of the evaluation table and {(backend, precision): speed-up at batch 1 vs torch fp32 batch 1}."""
    cases = [(v, b) for v, t in trackers.items() if not isinstance(t, str) for b in batches]
    rates: dict[tuple[tuple[str, str], int], list[float]] = {case: [] for case in cases}
    boxes: dict[tuple[tuple[str, str], int], list[np.ndarray]] = {}
    tracked = len(sequences) * (frames - 1)
    for variant, batch in cases:  # warm-up, untimed: first-call costs (allocations, weight packing)
        track_sequences(trackers[variant], sequences[:batch], 2, batch)
    for _ in range(rounds):
        for variant, batch in cases:
            tracker = trackers[variant]
            sync(device)
            begin = time.perf_counter()
            out = track_sequences(tracker, sequences, frames, batch)
            sync(device)
            rates[(variant, batch)].append(tracked / (time.perf_counter() - begin))
            boxes[(variant, batch)] = [b for b, _ in out]
    base = (("torch", "fp32"), 1)
    fps = {case: median(v) for case, v in rates.items()}
    rows: list[list[object]] = []
    speedups: dict[tuple[str, str], float] = {}
    for variant, tracker in trackers.items():
        name = "onnxruntime" if variant[0] == "onnx" else variant[0]
        if isinstance(tracker, str):
            rows.append([name, variant[1], "-", "-", "-", "-", "-", "-", f"refused: {tracker}"])
            continue
        for batch in batches:
            case = (variant, batch)
            ratio = fps[case] / fps[base] if base in fps else float("nan")
            if batch == 1:
                speedups[variant] = ratio
            same = boxes.get((variant, 1))
            identical = "-" if batch == 1 or same is None else _same(boxes[case], same)
            ref = boxes.get(base)
            diff = "-" if ref is None else f"{_max_diff(boxes[case], ref):.2f}"
            row = [name, variant[1], batch, tracked, f"{fps[case]:.3f}", f"{ratio:.2f}x", identical, diff]
            rows.append([*row, ""])
    return rows, speedups


def _max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def target_lines(speedups: dict[tuple[str, str], float], gpu: bool) -> list[str]:
    """The speed targets at batch 1 on a CPU, against torch fp32 of the same run."""
    if gpu:
        return ["targets (speed-ups at batch 1 on a CPU): not measured in this run (GPU)"]
    lines = []
    reduced = {k: v for k, v in speedups.items() if k[0] == "torch" and k[1] != "fp32"}
    if reduced:
        best = max(reduced, key=reduced.get)
        lines.append(
            f"target (torch int8 or bf16 >= {TARGET_SPEEDUP}x torch fp32 frames/s at batch 1, CPU): "
            f"{best[1]} {reduced[best]:.2f}x -> {verdict(reduced[best] >= TARGET_SPEEDUP)}"
        )
    if ("onnx", "fp32") in speedups:
        ratio = speedups[("onnx", "fp32")]
        lines.append(
            f"target (onnxruntime fp32 >= torch fp32 frames/s at batch 1, CPU): {ratio:.2f}x -> "
            f"{verdict(ratio >= 1.0)}"
        )
    fastest = max(speedups, key=speedups.get, default=None)
    if fastest is not None and fastest != ("torch", "fp32"):
        ratio = speedups[fastest]
        name = "onnxruntime" if fastest[0] == "onnx" else fastest[0]
        lines.append(
            f"target (fastest >= {TARGET_FASTEST}x torch fp32 frames/s at batch 1, CPU; its AUC within 0.5 "
            f"is judged with trained weights, README): {name} {fastest[1]} {ratio:.2f}x -> "
            f"{verdict(ratio >= TARGET_FASTEST)}"
        )
    return lines


def _ort_version() -> str:
    try:
        import onnxruntime
    except ImportError:
        return "not installed (pip install -e '.[onnx]')"
    return onnxruntime.__version__


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
        "--backends",
        default="",
        help="comma-separated of torch,onnx (default CPU both; GPU torch); onnx runs fp32 and int8",
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
    backends = [x.strip() for x in (args.backends or ("torch" if gpu else "torch,onnx")).split(",")]
    if set(backends) - set(BACKENDS):
        raise SystemExit(f"--backends: use torch and/or onnx, not {args.backends}")
    # bf16 has no onnxruntime path (refused by design, README): left out of the onnx rows.
    variants = [("torch", p) for p in precisions] + [
        ("onnx", p) for p in precisions if "onnx" in backends and p != "bf16"
    ]
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
    speedups: dict[tuple[str, str], float] = {}
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
                f"onnxruntime {_ort_version()}: the graphs of export-onnx, CPU execution provider, graph "
                f"optimisation level ALL, {torch.get_num_threads()} intra-op threads (as torch)",
                f"evaluation: {eval_preset}, {eval_sequences} sequences x {eval_frames} frames per case "
                f"({eval_frames - 1} tracked each); frames/s = median of {rounds} round(s), cases "
                "interleaved; speed-up vs torch fp32 batch 1 of the same run",
                f"whole frames: batch 1; fps = median of {rounds} alternating run(s) per decoder",
                f"decode alone: median of {reps} interleaved decode_greedy calls on a fixed memory",
                "MMAC = million multiply-accumulates (model/flops.py)",
            ],
        )
        if "eval" in parts:
            model = model_for(eval_preset, device)
            trackers = make_trackers(model, variants, device, Path(tmp))
            eval_rows, speedups = evaluation_cases(
                trackers, sequences[:eval_sequences], eval_frames, batches, rounds, device
            )
            del model, trackers
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
                    "backend",
                    "precision",
                    "batch",
                    "frames",
                    "frames/s",
                    "vs torch fp32 batch 1",
                    "same boxes as batch 1",
                    "max box diff vs torch fp32 (px)",
                    "note",
                ],
                eval_rows,
            )
        )
        print()
        for line in target_lines(speedups, gpu):
            print(line)
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
