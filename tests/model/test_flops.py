"""The analytic FLOP counts behind the benchmarks' MFU figures: they must match what the model runs."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from factories import SMALL
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from seqtrack_mlflow.config import ModelConfig, preset
from seqtrack_mlflow.model.flops import (
    encoder_macs,
    forward_flops,
    forward_macs,
    greedy_decode_macs,
    paper_macs,
    training_flops,
)
from seqtrack_mlflow.model.seqtrack import SeqTrack
from seqtrack_mlflow.model.tokens import teacher_forcing


def b256() -> ModelConfig:
    return dataclasses.replace(preset("b256")[0], pretrained="none")


def counted_macs(fn) -> int:
    """MACs torch's own counter sees; the math SDPA backend exposes the attention products as bmm."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("num_templates", [1, 2])
def test_forward_count_matches_the_model(num_templates: int) -> None:
    cfg = dataclasses.replace(SMALL, num_templates=num_templates)
    model = SeqTrack(cfg).eval()
    batch = 2
    templates = torch.randn(batch, num_templates, 3, cfg.template_size, cfg.template_size)
    search = torch.randn(batch, 3, cfg.search_size, cfg.search_size)
    inputs, _ = teacher_forcing(torch.randint(0, cfg.bins, (batch, 4)), cfg.bins)
    assert counted_macs(lambda: model(templates, search, inputs)) == batch * forward_macs(cfg)["total"]


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_decode_count_matches_the_model(use_cache: bool) -> None:
    model = SeqTrack(SMALL).eval().requires_grad_(False)
    memory = torch.randn(1, SMALL.search_grid**2, SMALL.decoder_dim)
    assert counted_macs(lambda: model.decode_greedy(memory, use_cache=use_cache)) == greedy_decode_macs(
        SMALL, use_cache
    )


def test_cache_saves_work() -> None:
    for cfg in (SMALL, b256()):
        assert greedy_decode_macs(cfg, True) < greedy_decode_macs(cfg, False)


def test_token_scaling() -> None:
    """Halving the patch quadruples the tokens: linears x4, attention x16, patch embedding unchanged."""
    p16 = encoder_macs(b256())
    p8 = encoder_macs(dataclasses.replace(b256(), patch_size=8))
    assert p8["encoder_linear"] == 4 * p16["encoder_linear"]
    assert p8["encoder_attention"] == 16 * p16["encoder_attention"]
    assert p8["patch_embed"] == p16["patch_embed"]


def test_b256_matches_the_paper() -> None:
    """The paper's 66 "GFLOPs" are thop MACs (Linear/Conv only); attention adds ~11 GMACs on top."""
    cfg = b256()
    assert cfg.num_tokens == 768
    assert 65e9 < paper_macs(cfg) < 67e9
    assert 76e9 < forward_macs(cfg)["total"] < 77.5e9
    assert forward_flops(cfg) == 2 * forward_macs(cfg)["total"]
    assert training_flops(cfg) == 3 * forward_flops(cfg)
