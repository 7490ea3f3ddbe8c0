"""What a training run will cost, estimated before any work: tokens, memory and time per sample.

`train` (steps/train.py) calls `check_run_cost` once its settings are final and before its MLflow run
starts: it refuses, with one line naming the fix, settings that cannot fit the memory available or
would take absurdly long on this machine, and otherwise returns the one-line estimate it prints.
Everything here is a pure function of the settings and two measurements (`measure_matmul_rate`,
`available_memory`), so the formulas are testable without a device.

Memory (per process; fp32 throughout, which over-counts bf16 autocast):

    total = batch x activation_bytes_per_sample + 20 bytes x parameters

- Parameters: weights, gradients, AdamW's two moments and one parameter-sized temporary of the foreach
  update = 5 fp32 copies = 20 bytes per parameter (`parameter_count` is exact: tests check it against
  the built model).
- Activations, what autograd keeps for the backward, per sample (n = encoder tokens, D = encoder
  width, h = heads, H = MLP width = D x mlp_ratio; m = search tokens, d = decoder width,
  h_d = decoder heads, F = decoder FFN width, L = 5 teacher-forced tokens, V = vocabulary):
    encoder blocks     depth x n x (9 D + 2 H + h + 4)
    patch embedding    2 x 3 p^2 n           (the input crops: the batch and the convolution's input)
    encoder output     n x D
    bridge             m x (D + d)
    decoder layers     layers x (6 m d + 4 h_d L m + L (16 d + 2 F))
    output head        L x (4 d + 4 V)
    backward transient n x (14 D + 2 H)      (the gradients alive inside one block's backward: the
                                          MLP's hidden-wide ones, q/k/v's and their stacked copy, ...)
  Per block that is 17 D + h + 4 floats per token at mlp_ratio 4. Measured with autograd's saved-tensor
  hooks on torch 2.14 (CPU, fp32 training): 16 D + h + 4 (block input, LayerNorm outputs, the qkv
  projection, the attention output, the residual, the MLP's two hidden-wide tensors, plus the LayerNorm
  statistics and the attention's log-sum-exp); the extra D is a margin for a kernel that returns its
  output in another layout and copies it. Over the whole model the formula is 1.45-1.7x what autograd
  keeps (tests/model/test_cost.py checks it is never less), the difference being the backward's transient;
  against the peak RSS of real fp32 training steps on the CPU (tiny at patch 16, 8, 4 and 2, batch 1-16,
  AdamW step included) the whole formula was 1.03-1.11x the measured growth.
- Attention memory is linear in n, not quadratic: no n x n matrix is kept. The encoder's attention runs
  through torch's fused `scaled_dot_product_attention` (timm `fused_attn`, dropout 0):
    CPU, fp32 training: `_scaled_dot_product_flash_attention_for_cpu` (seen in the profiler on the
      installed torch 2.14; a test trains the encoder with only that kernel allowed). Its forward
      works on q/k tiles in small per-thread buffers and keeps only the output and the log-sum-exp
      (h floats per token) for the backward, which recomputes the attention tile by tile.
    CUDA, fp32: the memory-efficient kernel (flash needs fp16/bf16), which keeps the same output +
      log-sum-exp; with bf16 autocast (`amp`): flash, the same. (torch's documented kernel choice; not
      measured here, no GPU was available.)
  The decoder's attention (dropout 0.1 in training) takes the math path on the CPU, which does keep
  its attention matrix, but that is L x m per head (5 x search tokens): in the decoder term above.
- Not counted: the framework itself (the memory measured as available already excludes this
  process), DataLoader worker processes, decoded video frames in flight, allocator fragmentation (the
  headroom below covers it).

A run is refused when `total x processes sharing the memory > MEMORY_HEADROOM x available` (CPU:
psutil's available memory, shared by the local DDP processes; CUDA: torch.cuda.mem_get_info's free
memory of this process's GPU).

Time: seconds per sample = `training_flops(cfg)` (model/flops.py: 3 x forward matmul FLOPs) /
(MATMUL_EFFICIENCY x the measured matmul rate), the rate of one square matmul in the training dtype
(fp32; bf16 under `amp`) on this device, measured in about 0.1-0.2 s. The trainer reaches 37-86 % of
that rate on the CPU (README, "Training throughput": tiny 37-48 %, b256 86 %), hence 0.5. An epoch is
`samples_per_epoch / world_size` samples per process. For small models the FLOP figure is a lower bound
(per-operation overhead, kernel launches and data loading, not matmuls, set the pace: it said ~12 s per
epoch for the tiny preset where an epoch took 31-38 s on a 2-core CPU), so where it puts one step under
TIMED_STEP_LIMIT_S, `check_run_cost` times three real training steps instead (train/step_timing.py; the
data loading is still not counted: the tiny preset's epoch then came out at 43 s estimated, 44-45 s run).

A run is refused when one training sample would take more than MAX_SECONDS_PER_SAMPLE (30 s). The
limit is per sample, not per epoch or per run, on purpose: the length of the run (epochs,
samples_per_epoch) is the user's explicit choice and is printed (b256 on a 2-core CPU: 5.2 s per
sample measured, 9 s estimated, 4-6 days per epoch: allowed, with that estimate; shorten it with
-P epochs / -P samples_per_epoch),
whereas a sample over half a minute means the model itself is out of proportion to the device: the first
report (50 samples) would come after the better part of an hour, and no choice of schedule helps.
The assignment's `-P patch_size=1` at the tiny preset's 128-px crops is such a case: 49,152 tokens,
7.5 TFLOP per sample, 2.5-6 minutes per sample on a 2-core CPU (5 epochs of 3,200 samples: one to two
months), about 20 GiB for a batch of 16; its fix is the README's recipe, 16-px crops (768 tokens, about
0.1 s per sample). On a GPU the same settings are feasible (an H100 at its fp32 matmul rate: about
0.3 s per sample, 20 GiB), and are not refused.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass

import torch

from ..config import ConfigError, ModelConfig, TrainConfig
from .flops import TEACHER_FORCED_TOKENS, training_flops

BYTES_PER_FLOAT = 4  # fp32: the model's parameters and (counted conservatively) every activation
STATE_COPIES = 5  # weights, gradients, AdamW exp_avg and exp_avg_sq, one foreach temporary
MEMORY_HEADROOM = 0.9  # share of the available memory a run may plan to use
MATMUL_EFFICIENCY = 0.5  # trainer FLOP/s / measured matmul FLOP/s (README: 37-86 % on the CPU)
MAX_SECONDS_PER_SAMPLE = 30.0
RECIPE_GRID = 16  # crops of 16 patches a side: 768 tokens, the official B256 count
MATMUL_SIZE = {"cpu": 1024, "cuda": 4096}  # ~2 GFLOP (CPU: ~20-40 ms) / ~137 GFLOP (GPU: a few ms)
MATMUL_BUDGET_S = 0.15  # timed repetitions stop after this long (at least 2, at most 5)
TIMED_STEP_LIMIT_S = 0.25  # steps the FLOP model puts under this are timed for real (train/step_timing.py)


@dataclass(frozen=True)
class CostEstimate:
    """The estimated cost of a training run, per process."""

    tokens: int  # encoder tokens per sample
    flops_per_sample: int  # training FLOPs (forward + backward)
    activation_bytes: int  # per sample
    parameters: int
    batch_size: int  # per process
    memory_bytes: int  # batch activations + parameter state, one process
    available_bytes: int  # memory available to the run (shared by `memory_sharers` processes)
    memory_sharers: int  # processes using the same memory (CPU DDP on one host), else 1
    matmul_rate: float  # measured FLOP/s
    seconds_per_sample: float
    samples_per_epoch: int  # per process
    epochs: int  # left to train
    device: str  # "CPU" or "GPU"
    # seconds_per_sample from a timed training step (train/step_timing.py), not from FLOPs
    step_timed: bool = False

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds_per_sample * self.samples_per_epoch

    @property
    def seconds_total(self) -> float:
        return self.seconds_per_epoch * self.epochs


def parameter_count(cfg: ModelConfig) -> int:
    """Exact parameter count of `SeqTrack(cfg)` (tests check it against the built model)."""
    d, hidden, p = cfg.encoder_dim, int(cfg.encoder_dim * cfg.mlp_ratio), cfg.patch_size
    m, t = cfg.search_grid**2, cfg.template_grid**2
    block = 4 * d * d + 2 * d * hidden + 9 * d + hidden  # qkv, proj, fc1, fc2 (+ biases), 2 LayerNorms
    encoder = 3 * p * p * d + d + (m + t) * d + cfg.encoder_depth * block + 2 * d
    dd, f, v, length = cfg.decoder_dim, cfg.decoder_ffn, cfg.vocab_size, TEACHER_FORCED_TOKENS
    attention = 4 * dd * dd + 4 * dd  # packed in_proj + out_proj
    layer = 2 * attention + 2 * dd * f + f + dd + 6 * dd  # self, cross, FFN, 3 LayerNorms
    decoder = v * dd + 2 * dd + length * dd + cfg.decoder_layers * layer + 2 * dd
    bridge = d * dd + dd + m * dd
    head = 2 * (dd * dd + dd) + dd * v + v
    return encoder + bridge + decoder + head


def activation_floats(cfg: ModelConfig) -> int:
    """Floats autograd keeps per training sample, plus the backward's transient (module docstring)."""
    n, d, heads, p = cfg.num_tokens, cfg.encoder_dim, cfg.encoder_heads, cfg.patch_size
    hidden = int(d * cfg.mlp_ratio)
    m, dd, dh, f = cfg.search_grid**2, cfg.decoder_dim, cfg.decoder_heads, cfg.decoder_ffn
    length = TEACHER_FORCED_TOKENS
    encoder = cfg.encoder_depth * n * (9 * d + 2 * hidden + heads + 4)
    embed = 2 * 3 * p * p * n
    decoder = cfg.decoder_layers * (6 * m * dd + 4 * dh * length * m + length * (16 * dd + 2 * f))
    head = length * (4 * dd + 4 * cfg.vocab_size)
    transient = n * (14 * d + 2 * hidden)
    return encoder + embed + n * d + m * (d + dd) + decoder + head + transient


def activation_bytes(cfg: ModelConfig) -> int:
    return BYTES_PER_FLOAT * activation_floats(cfg)


def state_bytes(cfg: ModelConfig) -> int:
    """Parameters, gradients and AdamW state."""
    return STATE_COPIES * BYTES_PER_FLOAT * parameter_count(cfg)


def memory_bytes(cfg: ModelConfig, batch_size: int) -> int:
    """Peak memory of one training process (module docstring)."""
    return batch_size * activation_bytes(cfg) + state_bytes(cfg)


def seconds_per_sample(cfg: ModelConfig, matmul_rate: float) -> float:
    return training_flops(cfg) / (MATMUL_EFFICIENCY * matmul_rate)


def estimate(
    cfg: ModelConfig,
    train: TrainConfig,
    *,
    matmul_rate: float,
    available_bytes: int,
    device: str,
    world_size: int = 1,
    memory_sharers: int = 1,
    epochs_done: int = 0,
) -> CostEstimate:
    """The cost of training `cfg` with `train` on one process of `world_size`."""
    return CostEstimate(
        tokens=cfg.num_tokens,
        flops_per_sample=training_flops(cfg),
        activation_bytes=activation_bytes(cfg),
        parameters=parameter_count(cfg),
        batch_size=train.batch_size,
        memory_bytes=memory_bytes(cfg, train.batch_size),
        available_bytes=available_bytes,
        memory_sharers=memory_sharers,
        matmul_rate=matmul_rate,
        seconds_per_sample=seconds_per_sample(cfg, matmul_rate),
        samples_per_epoch=math.ceil(train.samples_per_epoch / world_size),
        epochs=max(train.epochs - epochs_done, 0),
        device=device,
    )


def max_batch_that_fits(est: CostEstimate) -> int:
    """The largest batch whose memory fits (0: not even one sample)."""
    budget = MEMORY_HEADROOM * est.available_bytes / est.memory_sharers - (
        est.memory_bytes - est.batch_size * est.activation_bytes
    )
    return max(int(budget // est.activation_bytes), 0)


def refusal(est: CostEstimate, cfg: ModelConfig) -> str | None:
    """The one-line reason to refuse the run and its fix, or None where it fits (module docstring)."""
    problems = []
    need = est.memory_bytes * est.memory_sharers
    if need > MEMORY_HEADROOM * est.available_bytes:
        sharers = f" x {est.memory_sharers} processes" if est.memory_sharers > 1 else ""
        problems.append(
            f"needs ~{format_bytes(est.memory_bytes)} for batch {est.batch_size}{sharers}, "
            f"{format_bytes(est.available_bytes)} available"
        )
    if est.seconds_per_sample > MAX_SECONDS_PER_SAMPLE:
        problems.append(
            f"~{format_duration(est.seconds_per_sample)} per sample "
            f"(limit {MAX_SECONDS_PER_SAMPLE:.0f} s; ~{format_duration(est.seconds_per_epoch)} per epoch)"
        )
    if not problems:
        return None
    return (
        f"too costly for this {est.device}: {est.tokens} encoder tokens per sample "
        f"(patch_size={cfg.patch_size}, search_size={cfg.search_size}, template_size={cfg.template_size}), "
        f"{format_flops(est.flops_per_sample)} per training sample: {'; '.join(problems)}: {_fix(est, cfg)}"
    )


def _fix(est: CostEstimate, cfg: ModelConfig) -> str:
    p = cfg.patch_size
    crop = RECIPE_GRID * p
    fixes = []
    if p < RECIPE_GRID and max(cfg.search_size, cfg.template_size) > crop:
        recipe = "the README's recipe for patch size 1" if p == 1 else f"{RECIPE_GRID}x{RECIPE_GRID} patches"
        tokens = (1 + cfg.num_templates) * RECIPE_GRID**2
        fixes.append(f"-P search_size={crop} -P template_size={crop} ({recipe}, {tokens} tokens)")
        fixes.append("a larger patch (-P patch_size=16)")
    fits = max_batch_that_fits(est)
    if est.seconds_per_sample <= MAX_SECONDS_PER_SAMPLE and 1 <= fits < est.batch_size:
        fixes.append(f"-P batch_size={fits}")
    if not fixes:
        fixes.append("a smaller model (-P preset=tiny)")
        if est.device == "CPU":
            fixes.append("a GPU")
    return "use " + " or ".join(fixes)


def describe(est: CostEstimate) -> str:
    """The start-of-run line, e.g. `estimated cost: 768 tokens/sample, 3.2 GFLOP/sample, ...`."""
    epochs = f", ~{format_duration(est.seconds_total)} for {est.epochs} epochs" if est.epochs > 1 else ""
    if est.step_timed:
        step_ms = est.seconds_per_sample * est.batch_size * 1e3
        basis = f"a training step of batch {est.batch_size} timed: {step_ms:.0f} ms, data loading not counted"
    else:
        basis = f"matmul {est.matmul_rate / 1e9:,.0f} GFLOP/s measured"
    return (
        f"estimated cost: {est.tokens} tokens/sample, {format_flops(est.flops_per_sample)}/sample, "
        f"~{format_bytes(est.memory_bytes)} for batch {est.batch_size} "
        f"(of {format_bytes(est.available_bytes)} available), "
        f"~{format_duration(est.seconds_per_epoch)} per epoch{epochs} on this {est.device} ({basis})"
    )


def format_flops(flops: float) -> str:
    if flops >= 1e12:
        return f"{flops / 1e12:,.1f} TFLOP"
    return f"{flops / 1e9:.1f} GFLOP"


def format_bytes(n: float) -> str:
    gib = n / 2**30
    return f"{gib:.1f} GiB" if gib >= 0.1 else f"{n / 2**20:.0f} MiB"


def format_duration(seconds: float) -> str:
    """Short human durations: 0.05 s, 42 s, 4 min, 3.5 h, 5.6 days, 4.9 years."""
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds < 365 * 86400:
        return f"{seconds / 86400:.1f} days"
    return f"{seconds / (365.25 * 86400):.1f} years"


def measure_matmul_rate(device: torch.device, dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of a square matmul on `device` (median of 2-5 timed calls after one warm-up).

    Bounded: about 0.1-0.2 s on a 2-core CPU (1024^2 fp32, ~2 GFLOP a call); on a GPU a few ms plus
    cuBLAS's start-up in the warm-up call."""
    n = MATMUL_SIZE["cuda" if device.type == "cuda" else "cpu"]
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.matmul(a, b, out=out)
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 5 and (len(times) < 2 or time.perf_counter() - start < MATMUL_BUDGET_S):
        t0 = time.perf_counter()
        torch.matmul(a, b, out=out)
        sync()
        times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / sorted(times)[len(times) // 2]


def available_memory(device: torch.device) -> int:
    """Bytes a run may use: free memory of the GPU, or the host's available memory."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    import psutil

    return int(psutil.virtual_memory().available)


def check_run_cost(
    cfg: ModelConfig,
    train: TrainConfig,
    device: torch.device,
    world_size: int = 1,
    epochs_done: int = 0,
    time_step: bool = True,
) -> str:
    """Measure this device, estimate the run per process, and refuse it (`ConfigError`, one line) where
    it cannot fit memory or would take absurdly long; else return the estimate line to print.

    With `time_step`, a run whose step the FLOP model puts under TIMED_STEP_LIMIT_S gets its time from
    real training steps instead (train/step_timing.py: the FLOP model is 2.5-3x optimistic for small models).
    Under DDP every process measures and then all agree on the lowest rate and memory and the slowest
    step (so all refuse or none does); on the CPU the local processes share the host's memory."""
    dtype = torch.bfloat16 if train.amp and device.type == "cuda" else torch.float32
    rate, available = measure_matmul_rate(device, dtype), available_memory(device)
    distributed = world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()
    if distributed:
        values = torch.tensor([rate, float(available)], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.MIN)
        rate, available = float(values[0]), int(values[1])
    sharers = 1 if device.type == "cuda" else int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    est = estimate(
        cfg,
        train,
        matmul_rate=rate,
        available_bytes=available,
        device="GPU" if device.type == "cuda" else "CPU",
        world_size=world_size,
        memory_sharers=sharers,
        epochs_done=epochs_done,
    )
    reason = refusal(est, cfg)
    if reason:
        raise ConfigError(reason)
    if time_step and est.seconds_per_sample * est.batch_size <= TIMED_STEP_LIMIT_S:
        from ..train.step_timing import measure_step_seconds  # builds a model: only where it is timed

        seconds = measure_step_seconds(cfg, train, device)
        if distributed:
            value = torch.tensor([seconds], dtype=torch.float64, device=device)
            torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
            seconds = float(value[0])
        est = dataclasses.replace(est, seconds_per_sample=seconds, step_timed=True)
    return describe(est)


__all__ = [
    "MATMUL_EFFICIENCY",
    "MAX_SECONDS_PER_SAMPLE",
    "MEMORY_HEADROOM",
    "TIMED_STEP_LIMIT_S",
    "CostEstimate",
    "activation_bytes",
    "activation_floats",
    "available_memory",
    "check_run_cost",
    "describe",
    "estimate",
    "format_bytes",
    "format_duration",
    "format_flops",
    "max_batch_that_fits",
    "measure_matmul_rate",
    "memory_bytes",
    "parameter_count",
    "refusal",
    "seconds_per_sample",
    "state_bytes",
]
