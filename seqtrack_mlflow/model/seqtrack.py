"""SeqTrack: ViT encoder + causal decoder over box tokens, its loss, training IoU and optimiser groups.

Structure and initialisation follow the official model; parameter counts match the official presets.
Inference decoding (`decode_greedy`) picks tokens and scores them as the official tracker
(`tokens.choose_token`); its one departure: `use_cache=True` keeps per-layer self-attention K/V and
computes the memory K/V once, instead of re-running the prefix at every step (`use_cache=False`, the
official way; same result). A model with weights (pretrained, trained, official) comes from
`factory.build_model` and its siblings: this module knows no weight files.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig
from .decoder import MLP, BoxDecoder, MemoryBridge
from .encoder import ViTEncoder
from .pretrained import PretrainedReport
from .tokens import NUM_COORDS, cxcywh_to_xyxy, greedy_decode

SPECIAL_TOKEN_WEIGHT = 0.01  # official CE weight of END and START


class DecoderInput(NamedTuple):
    """One encoded batch as the decoding steps read it (`SeqTrack.decoder_input`)."""

    memory: Tensor  # (B, Ns, decoder_dim)
    memory_kv: list[tuple[Tensor, Tensor]] | None  # per layer (B, heads, Ns, hd); None: no cache


class SeqTrack(nn.Module):
    """templates + search crop -> logits over the box-token vocabulary (teacher forcing) or a box."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.encoder = ViTEncoder(cfg)
        self.bridge = MemoryBridge(cfg.encoder_dim, cfg.decoder_dim, cfg.search_grid**2)
        self.decoder = BoxDecoder(
            cfg.vocab_size,
            cfg.decoder_dim,
            cfg.decoder_heads,
            cfg.decoder_ffn,
            cfg.decoder_layers,
            cfg.decoder_dropout,
            max_len=NUM_COORDS + 1,
        )
        # Outside the decoder, so default nn.Linear init (not xavier), as in the official model.
        self.head = MLP(cfg.decoder_dim, cfg.decoder_dim, cfg.vocab_size, num_layers=3)
        self.pretrained_report: PretrainedReport | None = None

    def encode(self, templates: Tensor, search: Tensor) -> Tensor:
        """templates (B, nt, 3, T, T), search (B, 3, S, S) -> decoder memory (B, Ns, decoder_dim)."""
        return self.bridge(self.encoder(templates, search))

    def decode(self, memory: Tensor, input_tokens: Tensor) -> Tensor:
        """Teacher-forced decoder pass: (B, L) tokens -> (B, L, vocab) logits."""
        return self.head(self.decoder(input_tokens, memory, self.bridge.pos))

    def forward(self, templates: Tensor, search: Tensor, input_tokens: Tensor) -> Tensor:
        """input_tokens (B, 5) = [START, cx, cy, w, h] -> logits (B, 5, vocab)."""
        return self.decode(self.encode(templates, search), input_tokens)

    def decoder_input(self, memory: Tensor, use_cache: bool = True) -> DecoderInput:
        """What the decoding steps of one encoded batch read: the memory and, with the cache, the
        cross-attention K/V of every layer, computed once."""
        kv = self.decoder.memory_kv(memory, self.bridge.pos) if use_cache else None
        return DecoderInput(memory, kv)

    def decode_step(
        self, inputs: DecoderInput, prefix: Tensor, cache: list[tuple[Tensor, Tensor]] | None
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor]] | None]:
        """One greedy step (`tokens.DecodeStep`): the tokens so far (B, n) -> the next token's logits
        (B, vocab). With the memory K/V: the last token only, through the per-layer self-attention
        cache (allocated at the first step, filled in place); without: the whole prefix again."""
        if inputs.memory_kv is None:
            hidden = self.decoder(prefix, inputs.memory, self.bridge.pos)[:, -1]
            return self.head(hidden), None
        if cache is None:
            cache = self.decoder.new_cache(prefix.shape[0], inputs.memory)
        position = prefix.shape[1] - 1
        hidden = self.decoder.step(prefix[:, position:], position, inputs.memory_kv, cache)[:, -1]
        return self.head(hidden), cache

    @torch.no_grad()
    def decode_greedy(
        self, memory: Tensor, window: Tensor | None = None, use_cache: bool = True
    ) -> tuple[Tensor, Tensor]:
        """Four greedy steps from START -> tokens (B, 4) in [0, bins) and their confidences (B, 4).

        `window` (bins,), e.g. `hann_window(bins)`, multiplies the cx and cy probabilities before the
        argmax (window penalty). A confidence is the official one (`tokens.choose_token`): the chosen
        token's probability under a softmax over the whole vocabulary, windowed for cx and cy; ten
        times their sum is the official template-update score.
        """
        inputs = self.decoder_input(memory, use_cache)
        step = functools.partial(self.decode_step, inputs)
        return greedy_decode(step, memory.shape[0], self.cfg.bins, window, memory.device)

    def param_groups(self, lr: float, encoder_lr_mult: float, weight_decay: float) -> list[dict]:
        """AdamW groups: encoder at lr * encoder_lr_mult (official 0.1), the rest at lr; both decayed."""
        encoder = [p for p in self.encoder.parameters() if p.requires_grad]
        encoder_ids = {id(p) for p in encoder}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in encoder_ids]
        return [
            {"params": rest, "lr": lr, "weight_decay": weight_decay, "name": "decoder"},
            {"params": encoder, "lr": lr * encoder_lr_mult, "weight_decay": weight_decay, "name": "encoder"},
        ]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def sequence_loss(logits: Tensor, target: Tensor, bins: int) -> Tensor:
    """Cross-entropy over the vocabulary, weight 0.01 on END and START (official), weighted mean."""
    vocab = logits.shape[-1]
    weight = torch.ones(vocab, device=logits.device, dtype=logits.dtype)
    weight[bins:] = SPECIAL_TOKEN_WEIGHT
    return F.cross_entropy(logits.reshape(-1, vocab), target.reshape(-1), weight=weight)


@torch.no_grad()
def logging_iou(logits: Tensor, target: Tensor, bins: int) -> Tensor:
    """Mean IoU of the top-1 coordinate tokens (first four positions, read as cx, cy, w, h)."""
    pred = logits[:, :NUM_COORDS, :bins].argmax(-1).float()
    box_iou = _box_iou(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(target[:, :NUM_COORDS].float()))
    return box_iou.mean()


def _box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Element-wise IoU of (..., 4) corner boxes; empty unions count as 0."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


__all__ = [
    "NUM_COORDS",
    "DecoderInput",
    "SeqTrack",
    "count_parameters",
    "logging_iou",
    "sequence_loss",
]
