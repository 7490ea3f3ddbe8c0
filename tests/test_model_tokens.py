"""Box <-> token conversion, teacher forcing and the Hann window."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqtrack_mlflow.model.tokens import box_to_tokens, hann_window, teacher_forcing, tokens_to_box


def _random_boxes(n: int, crop: int, seed: int) -> torch.Tensor:
    """Boxes fully inside a crop (so clamping does not move them)."""
    g = torch.Generator().manual_seed(seed)
    wh = torch.rand(n, 2, generator=g) * (crop - 2) * 0.9 + 1
    xy = torch.rand(n, 2, generator=g) * (crop - 1 - wh)
    return torch.cat([xy, wh], dim=1)


@pytest.mark.parametrize(("crop", "bins"), [(256, 4000), (64, 4000), (128, 100), (384, 17)])
def test_round_trip_is_within_one_bin(crop: int, bins: int) -> None:
    boxes = _random_boxes(2000, crop, seed=crop + bins)
    tokens = box_to_tokens(boxes, crop, bins)
    assert tokens.dtype == torch.long and tokens.shape == boxes.shape
    assert int(tokens.min()) >= 0 and int(tokens.max()) <= bins - 1
    back = tokens_to_box(tokens, crop, bins)
    # Official convention: encode by (crop - 1), decode by crop, so the decoded box is the input
    # scaled by crop / (crop - 1), up to one quantisation bin (truncation).
    expected = boxes * crop / (crop - 1)
    one_bin = crop / (bins - 1)
    assert (back - expected).abs().max() < one_bin + 1e-3


def test_quantisation_truncates_like_the_official_code() -> None:
    crop, bins = 101, 11  # normalised = pixels / 100, tokens = int(v * 10)
    box = torch.tensor([[10.0, 20.0, 39.0, 59.0]])  # corners (0.10, 0.20)-(0.49, 0.79)
    # cx = 0.295 -> 2, cy = 0.495 -> 4, w = 0.39 -> 3, h = 0.59 -> 5 (never rounded up)
    assert box_to_tokens(box, crop, bins).tolist() == [[2, 4, 3, 5]]


def test_boxes_are_clamped_as_corners() -> None:
    crop, bins = 101, 1001  # one token per 0.1 px
    box = torch.tensor([[-20.0, 90.0, 40.0, 30.0]])  # x from -20 to 20, y from 90 to 120
    cx, cy, w, h = box_to_tokens(box, crop, bins)[0].tolist()
    # visible part: x 0..20, y 90..100
    assert (cx, w) == (100, 200)
    assert (cy, h) == (950, 100)


def test_tokens_to_box_uses_crop_size_and_batches() -> None:
    tokens = torch.tensor([[[1999, 1999, 3999, 999]], [[0, 0, 0, 0]]])  # (2, 1, 4)
    box = tokens_to_box(tokens, 256, 4000)
    assert box.shape == (2, 1, 4)
    cx = 1999 / 3999 * 256
    want = torch.tensor([cx - 128.0, cx - 999 / 3999 * 128, 256.0, 999 / 3999 * 256])
    assert torch.allclose(box[0, 0], want, atol=1e-4)
    assert box[1].abs().max() == 0


def test_teacher_forcing_layout() -> None:
    bins = 4000
    tokens = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    inp, tgt = teacher_forcing(tokens, bins)
    assert inp.tolist() == [[bins + 1, 1, 2, 3, 4], [bins + 1, 5, 6, 7, 8]]
    assert tgt.tolist() == [[1, 2, 3, 4, bins], [5, 6, 7, 8, bins]]
    assert inp.dtype == tgt.dtype == torch.long


def test_hann_window_is_numpy_hanning() -> None:
    for bins in (4000, 7, 2):
        w = hann_window(bins)
        assert w.shape == (bins,) and w.dtype == torch.float32
        np.testing.assert_allclose(w.numpy(), np.hanning(bins), atol=1e-6)
