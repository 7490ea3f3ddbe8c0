"""Analytic multiply-accumulate (MAC) and FLOP counts of SeqTrack, a pure function of ModelConfig.

Used by the benchmarks to turn samples/s into achieved FLOP/s (model FLOPs utilisation, MFU).

Conventions (stated because papers mix them):
- Only matrix products are counted: convolution (patch embedding), every nn.Linear / projection, and
  the two attention products (Q K^T and A V). LayerNorm, softmax, GELU/ReLU, residual adds, biases and
  the embedding lookup are left out (about 1-2 % of the total at B256).
- 1 MAC = 2 FLOPs. `forward_macs` returns MACs; `forward_flops` and `training_flops` return FLOPs.
- Training = 3 x forward (the backward pass costs two forward products: gradient w.r.t. inputs and
  w.r.t. weights). This is the usual MFU convention; it slightly over-counts the patch embedding, whose
  input (the image) needs no gradient.
- The SeqTrack paper's "66 GFLOPs" for B256 is thop-style: MACs of Conv2d/Linear modules only, without
  the attention products (which thop does not see). `paper_macs` reproduces that number; our full count
  (`forward_macs(...)["total"]`) adds the attention products (about 11 GMACs more at B256).
"""

from __future__ import annotations

from ..config import ModelConfig

TEACHER_FORCED_TOKENS = 5  # [START, cx, cy, w, h]: the decoder input length during training


def encoder_macs(cfg: ModelConfig) -> dict[str, int]:
    """Per-sample MACs of the ViT encoder over [search, templates] (no cls token)."""
    n, d = cfg.num_tokens, cfg.encoder_dim
    hidden = int(d * cfg.mlp_ratio)
    p = cfg.patch_size
    per_block_linear = n * d * 3 * d + n * d * d + 2 * n * d * hidden  # qkv, proj, fc1 + fc2
    per_block_attention = 2 * n * n * d  # Q K^T and A V, summed over heads
    return {
        "patch_embed": n * (3 * p * p) * d,
        "encoder_linear": cfg.encoder_depth * per_block_linear,
        "encoder_attention": cfg.encoder_depth * per_block_attention,
    }


def decoder_macs(cfg: ModelConfig, tokens: int = TEACHER_FORCED_TOKENS) -> dict[str, int]:
    """Per-sample MACs of bridge + decoder + output head for one teacher-forced pass of `tokens` tokens.

    Cross-attention keys/values are projected from all `search_grid**2` memory tokens in every layer.
    """
    m, e, d, f = cfg.search_grid**2, cfg.encoder_dim, cfg.decoder_dim, cfg.decoder_ffn
    length = tokens
    self_attn = length * d * 3 * d + 2 * length * length * d + length * d * d  # in_proj, QK/AV, out
    cross_attn = length * d * d + 2 * m * d * d + 2 * length * m * d + length * d * d  # q, kv, QK/AV, out
    ffn = 2 * length * d * f
    return {
        "bridge": m * e * d,
        "decoder": cfg.decoder_layers * (self_attn + cross_attn + ffn),
        "head": length * (2 * d * d + d * cfg.vocab_size),
    }


def forward_macs(cfg: ModelConfig, decoder_tokens: int = TEACHER_FORCED_TOKENS) -> dict[str, int]:
    """Per-sample forward MACs by part, plus "total"."""
    parts = {**encoder_macs(cfg), **decoder_macs(cfg, decoder_tokens)}
    parts["total"] = sum(parts.values())
    return parts


def forward_flops(cfg: ModelConfig, decoder_tokens: int = TEACHER_FORCED_TOKENS) -> int:
    """Per-sample forward FLOPs (2 per MAC)."""
    return 2 * forward_macs(cfg, decoder_tokens)["total"]


def training_flops(cfg: ModelConfig) -> int:
    """Per-sample FLOPs of one training step (forward + backward = 3 x forward, teacher forcing)."""
    return 3 * forward_flops(cfg)


def paper_macs(cfg: ModelConfig) -> int:
    """The paper's (thop) count: Conv2d/Linear MACs only, attention products excluded."""
    parts = forward_macs(cfg)
    return parts["total"] - parts["encoder_attention"] - _decoder_attention_macs(cfg)


def _decoder_attention_macs(cfg: ModelConfig, tokens: int = TEACHER_FORCED_TOKENS) -> int:
    m, d = cfg.search_grid**2, cfg.decoder_dim
    return cfg.decoder_layers * (2 * tokens * tokens * d + 2 * tokens * m * d)


def greedy_decode_macs(cfg: ModelConfig, use_cache: bool) -> int:
    """MACs of `SeqTrack.decode_greedy` for one sample (4 steps), cached or re-running the prefix.

    Uncached (the official way): step k runs the full decoder over k + 1 tokens, including the memory
    K/V projections. Cached: memory K/V once, then one token per step attending to its prefix.
    """
    m, d, f = cfg.search_grid**2, cfg.decoder_dim, cfg.decoder_ffn
    kv_memory = cfg.decoder_layers * 2 * m * d * d
    head = 2 * d * d + d * cfg.vocab_size  # only the last position goes through the head
    if not use_cache:
        steps = [decoder_macs(cfg, k)["decoder"] for k in range(1, 5)]
        return sum(steps) + 4 * head
    total = kv_memory
    for k in range(1, 5):  # one new token attending to k cached positions
        self_attn = d * 3 * d + 2 * k * d + d * d
        cross_attn = d * d + 2 * m * d + d * d
        total += cfg.decoder_layers * (self_attn + cross_attn + 2 * d * f) + head
    return total


__all__ = [
    "TEACHER_FORCED_TOKENS",
    "decoder_macs",
    "encoder_macs",
    "forward_flops",
    "forward_macs",
    "greedy_decode_macs",
    "paper_macs",
    "training_flops",
]
