"""Training throughput (samples/s) and model FLOPs utilisation of the trainer's step.

The step is the trainer's (train/trainer.py): box_to_tokens -> teacher_forcing -> model(templates,
search, inputs) -> sequence_loss -> backward -> clip_grad_norm_ -> AdamW step, plus the per-step
logging IoU. Inputs are fixed random tensors on the device (the data pipeline has its own benchmark).
Achieved FLOP/s = samples/s x `training_flops(cfg)` (3 x forward matmul FLOPs, see model/flops.py);
"matmul" is a large square torch.matmul measured by this script on the same device and dtype, and the
ratio of the two is the MFU reported. Configurations whose estimated step time exceeds
--max-step-seconds are listed as skipped (pass a larger value to run them).

    python benchmarks/train_throughput.py              # defaults: a few minutes on 2 CPU cores
    python benchmarks/train_throughput.py --quick      # seconds: checks the script runs
    python benchmarks/train_throughput.py --presets b256 --patch-sizes 16,8 --steps 10 --batch 4
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import math

import torch
from common import (
    add_run_args,
    fmt,
    markdown_table,
    matmul_flops,
    median,
    print_header,
    start,
    time_calls,
    verdict,
)

from seqtrack_mlflow.config import ModelConfig, TrainConfig, preset
from seqtrack_mlflow.model.factory import build_model
from seqtrack_mlflow.model.flops import training_flops
from seqtrack_mlflow.model.seqtrack import logging_iou, sequence_loss
from seqtrack_mlflow.model.tokens import box_to_tokens, teacher_forcing
from seqtrack_mlflow.train.trainer import make_optimizer

TARGET_MFU = 0.80  # guard: b256 fp32 training vs the fp32 matmul throughput measured in the same run
TARGET_GPU_AMP_MFU = 0.40  # GPU: b256 training with bf16 autocast vs the bf16 matmul of the same run
CPU_STEP_BUDGET = 10.0  # s of matmul work per step: the CPU batch shrinks below the default beyond it
CPU_CASE_BUDGET = 20.0  # s of matmul work per case: fewer timed steps (at least 2) beyond it
SMALL_CROP = 16  # crop size used with patch size 1 (a 16 x 16 grid, as patch 16 at 256 px)
MODES = ("fp32", "bf16", "fp32+compile", "bf16+compile")


def model_config(preset_name: str, patch: int, crop: int) -> ModelConfig:
    """The preset's architecture at another patch size / crop, randomly initialised (no download)."""
    cfg, _ = preset(preset_name)
    return dataclasses.replace(cfg, patch_size=patch, template_size=crop, search_size=crop, pretrained="none")


def make_step(cfg: ModelConfig, batch: int, mode: str, device: torch.device, grad_clip: float = 0.1):
    """Model, the trainer's optimiser and fixed inputs; returns a closure running one training step,
    which returns (loss, logging IoU) as a device tensor."""
    model = build_model(cfg).to(device).train()
    optimizer = make_optimizer(model, TrainConfig(lr=1e-4, encoder_lr_mult=0.1, weight_decay=1e-4))
    net = torch.compile(model) if "compile" in mode else model
    gen = torch.Generator().manual_seed(0)
    t, s = cfg.template_size, cfg.search_size
    templates = torch.randn(batch, cfg.num_templates, 3, t, t, generator=gen).to(device)
    search = torch.randn(batch, 3, s, s, generator=gen).to(device)
    xy = torch.rand(batch, 2, generator=gen) * s * 0.5
    wh = torch.rand(batch, 2, generator=gen) * s * 0.4 + 1.0
    search_box = torch.cat([xy, wh], dim=1).to(device)
    amp = mode.startswith("bf16")

    def step() -> torch.Tensor:
        tokens = box_to_tokens(search_box, cfg.search_size, cfg.bins)
        inputs, targets = teacher_forcing(tokens, cfg.bins)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = net(templates, search, inputs)
            loss = sequence_loss(logits.float(), targets, cfg.bins)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        iou = logging_iou(logits.detach().float(), targets, cfg.bins)
        return torch.stack([loss.detach().double(), iou.double()])  # the trainer's running sums

    return step


def dtype_of(mode: str) -> torch.dtype:
    return torch.bfloat16 if mode.startswith("bf16") else torch.float32


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default="tiny,b256", help="comma-separated presets (default tiny,b256)")
    p.add_argument(
        "--patch-sizes",
        default="16,8,4,1",
        help=f"comma-separated; patch 1 runs at {SMALL_CROP} px crops (default 16,8,4,1)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=0,
        help="timed steps per case (default CPU: tiny 5, b256 2, fewer if slow; GPU: 20)",
    )
    p.add_argument("--warmup", type=int, default=0, help="untimed steps first (default 1 on CPU, 3 on GPU)")
    p.add_argument(
        "--batch",
        type=int,
        default=0,
        help="batch size (default CPU: tiny 10, b256 2, less if slow; GPU: the preset's)",
    )
    p.add_argument(
        "--modes",
        default="",
        help=f"comma-separated of {', '.join(MODES)} (default fp32 on CPU; fp32,bf16,bf16+compile on GPU)",
    )
    p.add_argument(
        "--max-step-seconds",
        type=float,
        default=0.0,
        help="skip cases estimated slower than this per step (default 15 on CPU, no limit on GPU)",
    )
    add_run_args(p, "patch 16 only, 1-2 small steps: checks that the script runs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = start(args)
    gpu = device.type == "cuda"
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    patches = [16] if args.quick else [int(p) for p in args.patch_sizes.split(",") if p.strip()]
    modes = [m.strip() for m in (args.modes or ("fp32,bf16,bf16+compile" if gpu else "fp32")).split(",")]
    for mode in modes:
        if mode not in MODES:
            raise SystemExit(f"--modes: unknown mode {mode!r}, use some of {', '.join(MODES)}")
        if mode.startswith("bf16") and not gpu:
            raise SystemExit("--modes: bf16 autocast needs CUDA (the trainer refuses amp on the CPU)")
    warmup = args.warmup or (3 if gpu else 1)
    limit = args.max_step_seconds or (math.inf if gpu else 15.0)

    def batch_for(name: str, flops: float, peak: float) -> int:
        """The preset's batch on a GPU; on the CPU at most `CPU_STEP_BUDGET` s of matmul work."""
        if args.batch:
            return args.batch
        if gpu:
            return preset(name)[1].batch_size
        default = (4 if name == "tiny" else 1) if args.quick else (10 if name == "tiny" else 2)
        return max(1, min(default, math.floor(CPU_STEP_BUDGET * peak / flops)))

    def steps_for(name: str, step_estimate: float) -> int:
        if args.steps:
            return args.steps
        if gpu:
            return 20
        if args.quick:
            return 2 if name == "tiny" else 1
        default = 5 if name == "tiny" else 2
        return max(2, min(default, math.floor(CPU_CASE_BUDGET / step_estimate)))

    peaks = {mode: matmul_flops(device, dtype_of(mode), reps=2 if args.quick else 5) for mode in modes}
    print_header(
        "Training throughput",
        device,
        [
            "synthetic random inputs; step = forward + backward + clip + AdamW (as the trainer)",
            "FLOPs = 2 x multiply-accumulates of all matmuls (patch embed, linears, attention products); "
            "training = 3 x forward",
            "matmul = a large torch.matmul in the mode's dtype, measured on this device right after each "
            "case (at start: " + ", ".join(f"{m} {fmt(v / 1e9)} GFLOP/s" for m, v in peaks.items()) + ")",
            f"warm-up steps excluded: {warmup}; s/step is the median of the timed steps",
            "optimiser: the trainer's (AdamW, fused)",
        ],
    )
    headers = [
        "preset",
        "patch",
        "crop",
        "tokens",
        "batch",
        "mode",
        "s/step",
        "samples/s",
        "GFLOP/sample",
        "GFLOP/s",
        "matmul GFLOP/s",
        "of matmul",
    ]
    rows: list[list[object]] = []
    target_ratio: float | None = None
    amp_ratio: float | None = None
    for name in presets:
        for patch in patches:
            crop = SMALL_CROP if patch == 1 else preset(name)[0].search_size
            cfg = model_config(name, patch, crop)
            flops = training_flops(cfg)
            for mode in modes:
                # Estimates assume the matmul rate; real steps run at some fraction of it.
                batch = batch_for(name, flops, peaks[mode])
                head = [name, patch, crop, cfg.num_tokens, batch, mode]
                estimate = batch * flops / peaks[mode]
                if estimate > limit:
                    rows.append(head + [f"skipped (>{estimate:.0f} s)", "-", fmt(flops / 1e9), "-", "-", "-"])
                    continue
                try:
                    step = make_step(cfg, batch, mode, device)
                    times = time_calls(step, steps_for(name, estimate), warmup, device)
                except torch.OutOfMemoryError:
                    rows.append(head + ["out of memory", "-", fmt(flops / 1e9), "-", "-", "-"])
                    continue
                finally:
                    step = None
                    release(device)
                per_step = median(times)
                rate = batch / per_step
                achieved = rate * flops
                # The reference again, right after the case: on a shared machine both see the same load.
                peak = matmul_flops(device, dtype_of(mode), reps=2 if args.quick else 3)
                ratio = achieved / peak
                rows.append(
                    head
                    + [
                        f"{per_step:.3f}",
                        fmt(rate, 2),
                        fmt(flops / 1e9),
                        fmt(achieved / 1e9),
                        fmt(peak / 1e9),
                        f"{ratio:.0%}",
                    ]
                )
                if name == "b256" and patch == 16 and mode == "fp32":
                    target_ratio = ratio
                if name == "b256" and patch == 16 and mode == "bf16":
                    amp_ratio = ratio
    print(markdown_table(headers, rows))
    print()
    guard = f"target (b256, patch 16, fp32 >= {TARGET_MFU:.0%} of the fp32 matmul, same run)"
    if target_ratio is None:
        print(f"{guard}: not measured in this run")
    else:
        print(f"{guard}: {target_ratio:.0%} -> {verdict(target_ratio >= TARGET_MFU)}")
    if gpu:
        amp = f"target (GPU: b256, patch 16, bf16 autocast >= {TARGET_GPU_AMP_MFU:.0%} of the bf16 matmul)"
        if amp_ratio is None:
            print(f"{amp}: not measured in this run")
        else:
            print(f"{amp}: {amp_ratio:.0%} -> {verdict(amp_ratio >= TARGET_GPU_AMP_MFU)}")


if __name__ == "__main__":
    main()
