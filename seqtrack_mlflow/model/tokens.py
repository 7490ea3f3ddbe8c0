"""Boxes <-> coordinate tokens, teacher forcing, the Hann window and the greedy token choice (pure torch).

Conventions follow the official SeqTrack code: coordinate tokens are 0..bins-1, END = bins,
START = bins + 1.

Labels. The official training target of a box with centre c in a search crop of S pixels centred on
c_crop at r crop pixels per image pixel is the centre (S - 1)/2 + (c - c_crop) * r and the size w * r,
normalised by S - 1 and quantised by truncation, int(v * (bins - 1)). With c_crop the centre of the
crop actually cut, x0 + side/2, that is u - 0.5 for u = (c - x0) * r the continuous crop coordinate
(`processing.box_to_crop`): the pixel-index coordinate, in which 0 and S - 1 are the centres of the
first and last crop pixel. `box_to_tokens` takes continuous crop coordinates and applies that shift.
(The official code's c_crop is the centre it asked for, before the crop corner is rounded to whole
pixels; the cut crop's centre, at most half an image pixel away, is where the pixels show the target.)

Decoding. `tokens_to_box` is the exact inverse of `box_to_tokens` up to quantisation: it decodes the
centre of the token's quantisation cell, (token + 0.5) / (bins - 1), scales by S - 1 and shifts back
by 0.5. The official tracker instead dequantises token / (bins - 1) * S about the crop centre; scaling
by S where the labels divide by S - 1 stretches offsets from the crop centre and sizes by S / (S - 1)
(0.4 % at 256 px), and token / (bins - 1) is the lower edge of the truncated value's cell, half a bin
low on average. Both are departures on purpose: with them a perfect model's own labels would not
decode to its boxes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

PIXEL_CENTRE = 0.5  # continuous coordinate of pixel 0's centre; labels count from pixel centres
NUM_COORDS = 4  # (cx, cy, w, h)

# One decoder step: (tokens so far (B, n), the step's cache or None at the first step) -> the next
# token's logits (B, vocab) and the cache to hand to the next step.
DecodeStep = Callable[[Tensor, Any], tuple[Tensor, Any]]


def _xywh_to_xyxy(box: Tensor) -> Tensor:
    return torch.cat([box[..., :2], box[..., :2] + box[..., 2:]], dim=-1)


def _xyxy_to_cxcywh(box: Tensor) -> Tensor:
    return torch.cat([(box[..., :2] + box[..., 2:]) * 0.5, box[..., 2:] - box[..., :2]], dim=-1)


def cxcywh_to_xyxy(box: Tensor) -> Tensor:
    """(cx, cy, w, h) -> (x1, y1, x2, y2); works on token units as well as pixels."""
    half = box[..., 2:] * 0.5
    return torch.cat([box[..., :2] - half, box[..., :2] + half], dim=-1)


def box_to_tokens(box_xywh: Tensor, crop_size: int, bins: int) -> Tensor:
    """Crop-pixel (x, y, w, h), continuous coordinates -> (cx, cy, w, h) coordinate tokens in [0, bins).

    The official label (module docstring): corners shifted to pixel-index coordinates (-0.5),
    normalised by crop_size - 1, clamped to [0, 1] as corners (not as centre/size) so that a target
    partly outside the crop keeps its visible part, then truncated, int(v * (bins - 1)).
    """
    box = box_xywh.to(torch.float32)
    xy = (box[..., :2] - PIXEL_CENTRE) / float(crop_size - 1)
    wh = box[..., 2:] / float(crop_size - 1)
    corners = _xywh_to_xyxy(torch.cat([xy, wh], dim=-1)).clamp(0.0, 1.0)
    return (_xyxy_to_cxcywh(corners) * (bins - 1)).long()  # values >= 0: .long() truncates


def tokens_to_box(tokens: Tensor, crop_size: int, bins: int) -> Tensor:
    """(cx, cy, w, h) tokens -> crop-pixel (x, y, w, h) in continuous coordinates, float32.

    The exact inverse of `box_to_tokens` up to quantisation: the centre of the token's cell,
    (token + 0.5) / (bins - 1), times crop_size - 1, shifted back by half a pixel (module docstring on
    how this departs from the official dequantisation). The caller maps crop pixels to the image.
    """
    cxcywh = (tokens.to(torch.float32) + 0.5) / float(bins - 1) * float(crop_size - 1)
    wh = cxcywh[..., 2:]
    return torch.cat([cxcywh[..., :2] + PIXEL_CENTRE - 0.5 * wh, wh], dim=-1)


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


def choose_token(logits: Tensor, bins: int, window: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One greedy step as the official tracker: (..., vocab) logits -> token (...) and confidence (...).

    The token is the argmax over the coordinate bins of the probabilities, times `window` (bins,) when
    given (the cx and cy steps). The confidence is that chosen value with the probability taken, as
    the official tracker does, from a softmax over the WHOLE vocabulary (END and START included) and
    not renormalised over the bins. The ranking uses a softmax over the bins alone: the two differ by
    a factor common to all bins, so the argmax is the same; ranking this way keeps the chosen tokens
    exactly those of a bins-only softmax, whatever float rounding the mass on END/START brings.
    """
    logits = logits.float()
    ranked = logits[..., :bins].softmax(-1)
    if window is not None:
        ranked = ranked * window
    token = ranked.argmax(-1, keepdim=True)
    confidence = logits.softmax(-1).gather(-1, token)
    if window is not None:
        confidence = confidence * window[token]
    return token.squeeze(-1), confidence.squeeze(-1)


def greedy_decode(
    step: DecodeStep, batch: int, bins: int, window: Tensor | None = None, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor]:
    """The official greedy decoding, over any one-step decoder (PyTorch's or an ONNX graph's): four
    steps from START -> tokens (B, 4) in [0, bins) and their confidences (B, 4) (`choose_token`; the
    window, when given, on cx and cy only). START is bins + 1."""
    seq = torch.full((batch, NUM_COORDS + 1), bins + 1, device=device)
    confidences = torch.empty(batch, NUM_COORDS, dtype=torch.float32, device=device)
    if window is not None:
        window = window.to(device=device, dtype=torch.float32).reshape(-1)[:bins]
    cache = None
    for index in range(NUM_COORDS):
        logits, cache = step(seq[:, : index + 1], cache)
        token, confidence = choose_token(logits, bins, window if index < 2 else None)
        seq[:, index + 1] = token
        confidences[:, index] = confidence
    return seq[:, 1:], confidences


__all__ = [
    "NUM_COORDS",
    "DecodeStep",
    "box_to_tokens",
    "choose_token",
    "greedy_decode",
    "cxcywh_to_xyxy",
    "hann_window",
    "teacher_forcing",
    "tokens_to_box",
]
