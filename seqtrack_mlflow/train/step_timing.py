"""Time real training steps of a small model, for the start-of-run cost estimate (`cost.check_run_cost`).

The FLOP model (`cost.seconds_per_sample`) suits large models, whose steps are a few big matmuls; a model
as small as the tiny preset spends its step in per-operation overhead and small matrices, so the FLOP
figure came out 2.5-3x optimistic (estimated ~12 s per epoch where an epoch took 31-38 s on a 2-core
CPU). Where one step is cheap, the estimate times the real thing instead: the model built from the run's
settings, random crops of the run's batch size, the trainer's loss, optimiser and update (`optimizer_step`)
step (the data loading is not included). The global RNG state is left as it was, so a run's sampling
and initialisation do not depend on whether its cost was timed.
"""

from __future__ import annotations

import time

import torch

from ..config import ModelConfig, TrainConfig
from ..model.seqtrack import SeqTrack, sequence_loss
from ..model.tokens import teacher_forcing
from .trainer import make_optimizer, optimizer_step

TIMED_STEPS = 3  # after one warm-up step; the median is taken
STEP_BUDGET_S = 1.0  # timed steps stop once this long has gone by (at least one is timed)


def measure_step_seconds(cfg: ModelConfig, train: TrainConfig, device: torch.device) -> float:
    """Seconds per training sample of one real step of `cfg` at `train`'s batch size on `device`."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    batch = train.batch_size
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model = SeqTrack(cfg).to(device).train()
        optimizer = make_optimizer(model, train)
        t, s = cfg.template_size, cfg.search_size
        templates = torch.randn(batch, cfg.num_templates, 3, t, t, device=device)
        search = torch.randn(batch, 3, s, s, device=device)
        inputs, targets = teacher_forcing(torch.randint(0, cfg.bins, (batch, 4), device=device), cfg.bins)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=train.amp)

        def step() -> None:
            with autocast:
                loss = sequence_loss(model(templates, search, inputs).float(), targets, cfg.bins)
            optimizer_step(loss, model, optimizer, train.grad_clip)
            sync()

        step()  # warm-up: allocations, kernel selection
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < TIMED_STEPS and (not times or time.perf_counter() - start < STEP_BUDGET_S):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2] / batch


__all__ = ["STEP_BUDGET_S", "TIMED_STEPS", "measure_step_seconds"]
