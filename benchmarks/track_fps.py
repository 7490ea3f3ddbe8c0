"""Tracking speed: whole frames per second, and the greedy box decode alone, with the key/value-cached
decoder (use_cache=True) and the official way (use_cache=False: the full prefix re-run at every step).

Models are randomly initialised (no download) and in eval mode; the sequence is synthetic 1280x720
JPEG (data/synthetic.py). Whole-frame fps is `track_sequence`'s (JPEG decode + crop + encoder + decode
+ box mapping, initialisation excluded). The decode-alone timing runs `decode_greedy` on one fixed
encoder memory (batch 1, window penalty on), cached and uncached calls interleaved; the encoder
dominates whole frames, so this is where the two decoders differ measurably.

    python benchmarks/track_fps.py            # defaults: about a minute on 2 CPU cores
    python benchmarks/track_fps.py --quick    # seconds: checks the script runs
    python benchmarks/track_fps.py --frames 100 --reps 200 --device cuda
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

from seqtrack_mlflow.config import ModelConfig, TrackerConfig, preset
from seqtrack_mlflow.data.lasot import read_sequence
from seqtrack_mlflow.data.synthetic import generate_lasot
from seqtrack_mlflow.evaluation.tracker import SeqTrackTracker, track_sequence
from seqtrack_mlflow.model.flops import encoder_macs, greedy_decode_macs
from seqtrack_mlflow.model.seqtrack import SeqTrack, build_model
from seqtrack_mlflow.model.tokens import hann_window

FRAME_SIZE = (1280, 720)


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
    add_run_args(p, "few frames and reps: a check that it runs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = start(args)
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    rounds = args.rounds or (1 if args.quick else 2)
    reps = args.reps or (20 if args.quick else 100)

    def frames_for(name: str) -> int:
        if args.frames:
            return args.frames
        if device.type == "cuda":
            return 100
        big = name != "tiny"
        return (3 if big else 8) if args.quick else (6 if big else 30)

    length = max(frames_for(name) for name in presets)
    frame_rows: list[list[object]] = []
    decode_rows: list[list[object]] = []
    all_met = True
    with tempfile.TemporaryDirectory(prefix="seqtrack-bench-") as tmp:
        dirs = generate_lasot(
            Path(tmp), ["airplane"], sequences_per_class=1, frames=max(length, 2), size=FRAME_SIZE, seed=0
        )
        seq = read_sequence(dirs[0])
        print_header(
            "Tracking speed",
            device,
            [
                f"synthetic {FRAME_SIZE[0]}x{FRAME_SIZE[1]} JPEG sequence; random weights; batch 1; "
                f"fps = median of {rounds} alternating run(s) per decoder",
                f"decode alone: median of {reps} interleaved decode_greedy calls on a fixed memory",
                "MMAC = million multiply-accumulates (model/flops.py)",
            ],
        )
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
    print("Whole frames\n")
    print(
        markdown_table(
            ["preset", "frames", "fps cached", "fps full prefix", "cached speed-up", "same boxes"], frame_rows
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
