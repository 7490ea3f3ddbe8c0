"""Boxes <-> coordinate tokens, teacher forcing and the Hann window (pure torch).

Conventions follow the official SeqTrack code (REFERENCE.md, "Vocabulary and coordinates"):
coordinate tokens are 0..bins-1, END = bins, START = bins + 1.

Training normalises crop pixels by (crop_size - 1) while inference dequantises with crop_size. The
official code does exactly this (a scale mismatch of crop_size / (crop_size - 1), 0.4 % at 256 px);
we keep it so that trained behaviour and published numbers stay comparable.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _xywh_to_xyxy(box: Tensor) -> Tensor:
    return torch.cat([box[..., :2], box[..., :2] + box[..., 2:]], dim=-1)


def _xyxy_to_cxcywh(box: Tensor) -> Tensor:
    return torch.cat([(box[..., :2] + box[..., 2:]) * 0.5, box[..., 2:] - box[..., :2]], dim=-1)


def cxcywh_to_xyxy(box: Tensor) -> Tensor:
    """(cx, cy, w, h) -> (x1, y1, x2, y2); works on token units as well as pixels."""
    half = box[..., 2:] * 0.5
    return torch.cat([box[..., :2] - half, box[..., :2] + half], dim=-1)


def box_to_tokens(box_xywh: Tensor, crop_size: int, bins: int) -> Tensor:
    """Crop-pixel (x, y, w, h) -> (cx, cy, w, h) coordinate tokens in [0, bins).

    The box is clamped to the crop as corners (not as centre/size) so that a target partly outside
    the crop keeps its visible part, exactly as the official training targets do. Quantisation
    truncates (int(v * (bins - 1))), also as the official code.
    """
    norm = box_xywh.to(torch.float32) / float(crop_size - 1)
    corners = _xywh_to_xyxy(norm).clamp(0.0, 1.0)
    return (_xyxy_to_cxcywh(corners) * (bins - 1)).long()  # values >= 0: .long() truncates


def tokens_to_box(tokens: Tensor, crop_size: int, bins: int) -> Tensor:
    """(cx, cy, w, h) tokens -> crop-pixel (x, y, w, h), float32.

    Dequantises as the official tracker: token / (bins - 1) * crop_size (see the module docstring
    for the crop_size vs crop_size - 1 mismatch). The caller divides by its resize factor.
    """
    cxcywh = tokens.to(torch.float32) / float(bins - 1) * float(crop_size)
    wh = cxcywh[..., 2:]
    return torch.cat([cxcywh[..., :2] - 0.5 * wh, wh], dim=-1)


def teacher_forcing(tokens: Tensor, bins: int) -> tuple[Tensor, Tensor]:
    """(B, 4) box tokens -> decoder input [START, t0..t3] and target [t0..t3, END], both (B, 5).

    One decoder pass per batch then trains every position at once (causal mask).
    """
    tokens = tokens.long()
    start = tokens.new_full((*tokens.shape[:-1], 1), bins + 1)
    end = tokens.new_full((*tokens.shape[:-1], 1), bins)
    return torch.cat([start, tokens], dim=-1), torch.cat([tokens, end], dim=-1)


def hann_window(bins: int, device: torch.device | str | None = None) -> Tensor:
    """The official 1-D window penalty, numpy.hanning(bins) (symmetric), as float32 (bins,).

    Multiplying the cx/cy probabilities by it favours positions near the search-crop centre, i.e.
    small motion since the previous frame.
    """
    return torch.hann_window(bins, periodic=False, dtype=torch.float32, device=device)


__all__ = [
    "box_to_tokens",
    "cxcywh_to_xyxy",
    "hann_window",
    "teacher_forcing",
    "tokens_to_box",
]
