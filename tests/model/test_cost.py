"""The cost estimate made before training: its formulas, the refusal of settings too big for the machine
(the assignment's patch size 1 at 128-px crops) and the start-of-run line."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import mlflow
import pytest
import torch
from click.testing import CliRunner
from factories import SMALL  # the same small model as the FLOP model's tests
from torch.nn.attention import SDPBackend, sdpa_kernel

from seqtrack_mlflow.cli import main
from seqtrack_mlflow.config import ConfigError, DataConfig, ModelConfig, TrainConfig, build_settings, preset
from seqtrack_mlflow.model import cost
from seqtrack_mlflow.model.flops import training_flops
from seqtrack_mlflow.model.seqtrack import SeqTrack, sequence_loss
from seqtrack_mlflow.model.tokens import teacher_forcing
from seqtrack_mlflow.train.step_timing import measure_step_seconds

GIB = 2**30
CPU_RATE = 100e9  # fp32 matmul FLOP/s of the 2-core development machine (README, "Performance")
GPU_RATE = 50e12  # fp32 (no TF32) matmul of an H100/A100-class GPU, a conservative round figure


def tiny(**over: int) -> ModelConfig:
    return dataclasses.replace(preset("tiny")[0], **over)


def estimate(cfg: ModelConfig, train: TrainConfig, rate: float = CPU_RATE, gib: float = 20, **kw):
    device = "GPU" if rate >= 1e12 else "CPU"
    return cost.estimate(cfg, train, matmul_rate=rate, available_bytes=int(gib * GIB), device=device, **kw)


def test_tokens() -> None:
    assert tiny().num_tokens == 8**2 + 2 * 4**2 == 96  # 128-px search, two 64-px templates
    assert tiny(patch_size=1).num_tokens == 128**2 + 2 * 64**2 == 24576
    for crop in (16, 32):
        assert tiny(patch_size=1, search_size=crop, template_size=crop).num_tokens == 3 * crop**2
    assert estimate(tiny(patch_size=1), preset("tiny")[1]).tokens == 24576


@pytest.mark.parametrize("name", ["small", "tiny", "b256", "l384"])
def test_parameter_count_is_exact(name: str) -> None:
    cfg = SMALL if name == "small" else dataclasses.replace(preset(name)[0], pretrained="none")
    with torch.device("meta"):  # no memory, no download
        model = SeqTrack(cfg)
    assert cost.parameter_count(cfg) == sum(p.numel() for p in model.parameters())


def saved_floats(cfg: ModelConfig, batch: int = 2) -> float:
    """Floats per sample that autograd keeps for the backward of one training forward."""
    torch.manual_seed(0)
    model = SeqTrack(cfg).train()
    t, s = cfg.template_size, cfg.search_size
    templates, search = torch.randn(batch, cfg.num_templates, 3, t, t), torch.randn(batch, 3, s, s)
    inputs, targets = teacher_forcing(torch.randint(0, cfg.bins, (batch, 4)), cfg.bins)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept: dict[int, int] = {}

    def pack(x: torch.Tensor) -> torch.Tensor:
        storage = x.untyped_storage()
        if storage.data_ptr() not in weights:
            kept[storage.data_ptr()] = storage.nbytes()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        sequence_loss(model(templates, search, inputs), targets, cfg.bins)
    return sum(kept.values()) / 4 / batch


@pytest.mark.parametrize(
    "cfg",
    [SMALL, dataclasses.replace(tiny(patch_size=4, search_size=64, template_size=64), encoder_depth=2)],
    ids=["small", "768-tokens"],
)
def test_activation_formula_covers_what_autograd_keeps(cfg: ModelConfig) -> None:
    """Conservative (never below what is kept; the rest of the margin is the backward's transient) but
    not wildly so."""
    kept = saved_floats(cfg)
    assert kept <= cost.activation_floats(cfg) <= 1.8 * kept


def test_encoder_attention_is_the_fused_kernel_on_the_cpu() -> None:
    """The formula's attention memory is linear in the tokens because fp32 training on the CPU runs the
    encoder's attention through torch's flash kernel, which keeps no tokens x tokens matrix: with only
    that kernel allowed, a training forward and backward still run."""
    encoder = SeqTrack(SMALL).encoder.train()
    t, s = SMALL.template_size, SMALL.search_size
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        encoder(torch.randn(2, 2, 3, t, t), torch.randn(2, 3, s, s)).sum().backward()


def test_memory_grows_with_tokens_and_batch() -> None:
    by_tokens = [cost.memory_bytes(tiny(patch_size=p), 16) for p in (16, 8, 4, 2, 1)]
    assert by_tokens == sorted(by_tokens) and len(set(by_tokens)) == 5
    by_batch = [cost.memory_bytes(tiny(), b) for b in (1, 2, 16, 64)]
    assert by_batch == sorted(by_batch) and len(set(by_batch)) == 4
    assert cost.memory_bytes(tiny(), 0) == cost.state_bytes(tiny()) == 20 * cost.parameter_count(tiny())
    # linear, not quadratic, in the tokens (fused attention): 4x the tokens, about 4x the activations
    assert 3.5 < cost.activation_bytes(tiny(patch_size=2)) / cost.activation_bytes(tiny(patch_size=4)) < 4.5


def test_time_comes_from_the_flop_model() -> None:
    cfg, train = tiny(patch_size=1), preset("tiny")[1]
    est = estimate(cfg, train, world_size=2)
    assert est.flops_per_sample == training_flops(cfg)
    assert est.seconds_per_sample == training_flops(cfg) / (cost.MATMUL_EFFICIENCY * CPU_RATE)
    assert est.samples_per_epoch == train.samples_per_epoch // 2  # DDP: per process
    assert est.seconds_total == est.seconds_per_sample * est.samples_per_epoch * train.epochs
    assert estimate(cfg, train, epochs_done=3).epochs == train.epochs - 3


def estimate_768_tokens(**over: object) -> cost.CostEstimate:
    """An estimate as the describe line's tests need it (768 tokens, batch 16, 0.08 s per sample)."""
    fields = dict(
        tokens=768,
        flops_per_sample=3_200_000_000,
        activation_bytes=20 * 2**20,
        parameters=2_565_122,
        batch_size=16,
        memory_bytes=int(1.2 * GIB),
        available_bytes=20 * GIB,
        memory_sharers=1,
        matmul_rate=100e9,
        seconds_per_sample=0.08,
        samples_per_epoch=3000,
        epochs=5,
        device="CPU",
    )
    return cost.CostEstimate(**{**fields, **over})


def test_describe_is_one_line() -> None:
    est = estimate_768_tokens()
    assert cost.describe(est) == (
        "estimated cost: 768 tokens/sample, 3.2 GFLOP/sample, ~1.2 GiB for batch 16 (of 20.0 GiB available), "
        "~4 min per epoch, ~20 min for 5 epochs on this CPU (matmul 100 GFLOP/s measured)"
    )
    assert [cost.format_duration(s) for s in (0.05, 42, 600, 4 * 3600, 5 * 86400, 2 * 365 * 86400)] == [
        "0.05 s",
        "42 s",
        "10 min",
        "4.0 h",
        "5.0 days",
        "2.0 years",
    ]


def test_what_is_allowed() -> None:
    """The tests' small settings and the tiny preset on a CPU; the official presets at their defaults on
    a GPU (40 GiB free: an A100-40GB); b256 on a CPU too (days per epoch, but its length is the user's
    choice of epochs and samples_per_epoch)."""
    train = preset("tiny")[1]
    for crop in (32, 64, 128):
        for cfg in (tiny(search_size=crop, template_size=crop), tiny(patch_size=8, search_size=crop)):
            assert cost.refusal(estimate(cfg, train, gib=4), cfg) is None
    recipe = tiny(patch_size=1, search_size=16, template_size=16)
    assert cost.refusal(estimate(recipe, train, gib=4), recipe) is None
    for name in ("b256", "b384", "l256", "l384"):
        cfg, official = preset(name)
        assert cost.refusal(estimate(cfg, official, rate=GPU_RATE, gib=40), cfg) is None, name
    b256, official = preset("b256")
    assert cost.refusal(estimate(b256, official, gib=16), b256) is None


def test_patch_size_1_at_the_tiny_crops_is_refused() -> None:
    cfg = tiny(patch_size=1)
    est = estimate(cfg, preset("tiny")[1], gib=64)  # plenty of memory: refused for its time
    message = cost.refusal(est, cfg)
    assert est.seconds_per_sample > cost.MAX_SECONDS_PER_SAMPLE
    assert message is not None and "\n" not in message
    assert "24576 encoder tokens" in message and "-P search_size=16 -P template_size=16" in message
    assert "per sample" in message and "-P patch_size=16" in message


def test_memory_refusal_names_a_batch_that_fits() -> None:
    cfg, train = tiny(patch_size=4), dataclasses.replace(preset("tiny")[1], batch_size=64)
    est = estimate(cfg, train, gib=2)
    message = cost.refusal(est, cfg)
    assert (
        message is not None
        and message.startswith("too costly for this CPU: ")
        and "2.0 GiB available" in message
    )
    fits = cost.max_batch_that_fits(est)
    assert 1 <= fits < 64 and message.endswith(f"-P batch_size={fits}")
    smaller = estimate(cfg, dataclasses.replace(train, batch_size=fits), gib=2)
    assert cost.refusal(smaller, cfg) is None
    # CPU DDP: the processes on one host share its memory
    assert cost.refusal(
        estimate(cfg, dataclasses.replace(train, batch_size=fits), gib=2, memory_sharers=2), cfg
    )


def test_a_timed_estimate_names_its_step() -> None:
    est = estimate_768_tokens(
        batch_size=8, seconds_per_sample=0.0075, samples_per_epoch=5000, step_timed=True
    )
    assert cost.describe(est).endswith(
        "~38 s per epoch, ~3 min for 5 epochs on this CPU "
        "(a training step of batch 8 timed: 60 ms, data loading not counted)"
    )


def test_a_small_model_is_timed_for_real_and_a_large_one_by_its_flops(this_machine: None) -> None:
    """The tiny preset's step is timed (the FLOP model is 2.5-3x optimistic for it); b256's is not (one
    step would take seconds); `time_step=False` (main's refusal check) never times."""
    cpu = torch.device("cpu")
    small = build_settings("tiny", {}, {}, DataConfig())
    assert "a training step of batch 8 timed: " in cost.check_run_cost(small.model, small.train, cpu)
    flops_line = cost.check_run_cost(small.model, small.train, cpu, time_step=False)
    assert flops_line.endswith("on this CPU (matmul 100 GFLOP/s measured)")
    large = build_settings("b256", {}, {}, DataConfig())
    assert cost.check_run_cost(large.model, large.train, cpu).endswith("(matmul 100 GFLOP/s measured)")


def test_timing_a_step_leaves_the_random_state_alone() -> None:
    """A run's sampling and init must not depend on whether its cost was timed."""
    settings = build_settings("tiny", {}, {}, DataConfig())
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    seconds = measure_step_seconds(settings.model, settings.train, torch.device("cpu"))
    assert torch.equal(torch.rand(4), expected) and 0 < seconds < 10


def test_matmul_measurement_is_quick() -> None:
    start = time.perf_counter()
    rate = cost.measure_matmul_rate(torch.device("cpu"))
    assert time.perf_counter() - start < 1.0 and rate > 1e8


def test_recipe_for_patch_size_1_passes_with_an_estimate() -> None:
    """The README's recipe, measured on this machine for real."""
    settings = build_settings(
        "tiny", {"patch_size": 1, "search_size": 16, "template_size": 16}, {}, DataConfig()
    )
    line = cost.check_run_cost(settings.model, settings.train, torch.device("cpu"))
    assert line.startswith("estimated cost: 768 tokens/sample, 2.9 GFLOP/sample, ~") and "on this CPU" in line


@pytest.fixture
def this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pin the measurements to the development machine (2 cores, ~100 GFLOP/s, 20 GiB free), so the
    verdicts do not depend on the machine running the tests."""
    monkeypatch.setattr(cost, "measure_matmul_rate", lambda device, dtype=torch.float32: CPU_RATE)
    monkeypatch.setattr(cost, "available_memory", lambda device: 20 * GIB)


def test_cli_refuses_patch_size_1_at_128_px_crops(
    tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, this_machine: None
) -> None:
    monkeypatch.chdir(tmp_path)
    # 128-px templates as well as search crops (49152 tokens) at batch 16: over the time and memory
    # limits. The preset's 64-px templates give 24576 tokens, ~38 s a sample, under the time limit.
    args = ["train", "--patch_size", "1", "--template_size", "128", "--batch_size", "16"]
    args += ["--source", "synthetic", "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "search_size=16" in errors[0] and "per sample" in errors[0] and "GiB" in errors[0]
    assert "estimated cost" not in result.output
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "cache").exists()
    assert mlflow.search_runs(search_all_experiments=True).empty


def test_cli_prints_the_estimate_before_any_work(
    tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, this_machine: None
) -> None:
    """The 16-px recipe passes the check; the line comes before the data preflight (stopped there)."""

    def stop(data: DataConfig) -> None:
        raise ConfigError("stopped after the estimate")

    monkeypatch.setattr("seqtrack_mlflow.steps.train_start.preflight", stop)
    monkeypatch.chdir(tmp_path)
    args = [
        "train",
        "--patch_size",
        "1",
        "--search_size",
        "16",
        "--template_size",
        "16",
        "--source",
        "synthetic",
    ]
    result = CliRunner().invoke(main, [*args, "--device", "cpu"])
    assert result.exit_code == 2 and "error: stopped after the estimate" in result.stderr, result.output
    assert "estimated cost: 768 tokens/sample, 2.9 GFLOP/sample" in result.stdout
    assert "on this CPU" in result.stdout
