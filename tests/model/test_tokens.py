"""Box <-> token conversion, teacher forcing and the Hann window."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqtrack_mlflow.model.tokens import (
    box_to_tokens,
    choose_token,
    hann_window,
    teacher_forcing,
    tokens_to_box,
)


def _random_boxes(n: int, crop: int, seed: int) -> torch.Tensor:
    """Boxes between the first and last pixel centres of a crop (so clamping does not move them)."""
    g = torch.Generator().manual_seed(seed)
    wh = torch.rand(n, 2, generator=g) * (crop - 2) * 0.9 + 1
    xy = torch.rand(n, 2, generator=g) * (crop - 1 - wh) + 0.5
    return torch.cat([xy, wh], dim=1)


@pytest.mark.parametrize(("crop", "bins"), [(256, 4000), (64, 4000), (128, 100), (384, 17)])
def test_round_trip_is_within_half_a_bin_without_bias(crop: int, bins: int) -> None:
    boxes = _random_boxes(20000, crop, seed=crop + bins)
    tokens = box_to_tokens(boxes, crop, bins)
    assert tokens.dtype == torch.long and tokens.shape == boxes.shape
    assert int(tokens.min()) >= 0 and int(tokens.max()) <= bins - 1
    error = tokens_to_box(tokens, crop, bins).double() - boxes.double()
    step = (crop - 1) / (bins - 1)  # crop pixels per token
    # Decoding a cell's centre: within half a step (x, y add the cx/cy and w/h halves).
    assert error[:, 2:].abs().max() <= 0.5 * step + 1e-3
    assert error[:, :2].abs().max() <= step + 1e-3
    assert error.mean(0).abs().max() < 0.02 * step  # no bias


def test_labels_are_relative_to_the_crop_centre_in_pixel_index_coordinates() -> None:
    crop, bins = 101, 1001  # normalised = (pixel index) / 100, one token per 0.1 px
    # Continuous crop coordinates: the crop's centre is 50.5 (pixel 50's centre), pixel index 50.
    centred = torch.tensor([[40.5, 30.5, 20.0, 40.0]])
    assert box_to_tokens(centred, crop, bins).tolist() == [[500, 500, 200, 400]]
    # Decoding takes the cell centres: +0.05 px on each centre and size, so +0.025 px on the corner.
    decoded = tokens_to_box(torch.tensor([[500, 500, 200, 400]]), crop, bins)
    assert torch.allclose(decoded, centred + torch.tensor([0.025, 0.025, 0.05, 0.05]), atol=1e-4)


def test_quantisation_truncates_like_the_official_code() -> None:
    crop, bins = 101, 11  # normalised = (pixels - 0.5) / 100, tokens = int(v * 10)
    box = torch.tensor([[10.5, 20.5, 39.0, 59.0]])  # corners (0.10, 0.20)-(0.49, 0.79)
    # cx = 0.295 -> 2, cy = 0.495 -> 4, w = 0.39 -> 3, h = 0.59 -> 5 (never rounded up)
    assert box_to_tokens(box, crop, bins).tolist() == [[2, 4, 3, 5]]


def test_boxes_are_clamped_as_corners() -> None:
    crop, bins = 101, 1001  # one token per 0.1 px
    box = torch.tensor([[-19.5, 90.5, 40.0, 30.0]])  # pixel index x from -20 to 20, y from 90 to 120
    cx, cy, w, h = box_to_tokens(box, crop, bins)[0].tolist()
    # visible part (pixel index 0..100): x 0..20, y 90..100
    assert (cx, w) == (100, 200)
    assert (cy, h) == (950, 100)


def test_tokens_to_box_decodes_cell_centres_and_batches() -> None:
    tokens = torch.tensor([[[1999, 1999, 3999, 999]], [[0, 0, 0, 0]]])  # (2, 1, 4)
    box = tokens_to_box(tokens, 256, 4000)
    assert box.shape == (2, 1, 4)

    def px(t: float) -> float:  # token -> pixel-index units
        return (t + 0.5) / 3999 * 255

    cx, w, h = px(1999) + 0.5, px(3999), px(999)
    want = torch.tensor([cx - w / 2, cx - h / 2, w, h])
    assert torch.allclose(box[0, 0], want, atol=1e-4)
    zero = px(0)
    corner = 0.5 + zero / 2  # pixel 0's centre + half the smallest decoded size
    assert torch.allclose(box[1, 0], torch.tensor([corner, corner, zero, zero]), atol=1e-5)


def test_choose_token_official_confidence_by_hand() -> None:
    bins = 4  # vocabulary: 4 bins, END, START
    logits = torch.tensor([1.0, 3.0, 2.0, 1.0, 2.0, 1.0]).log()  # softmax = [1, 3, 2, 1, 2, 1] / 10
    window = torch.tensor([0.0, 0.5, 1.0, 0.0])
    # No window: bin 1, probability 3/10 of the whole vocabulary (not 3/7 of the bins).
    token, confidence = choose_token(logits, bins)
    assert int(token) == 1 and float(confidence) == pytest.approx(0.3, abs=1e-6)
    # Window: values [0, 0.15, 0.2, 0]: bin 2 wins and its windowed value is the confidence.
    token, confidence = choose_token(logits, bins, window)
    assert int(token) == 2 and float(confidence) == pytest.approx(0.2, abs=1e-6)
    # Batched; the chosen tokens are those of the bins-only softmax (same ranking).
    batch = torch.randn(50, 3, 40, generator=torch.Generator().manual_seed(0))
    batch[..., 38:] += 3.0  # much mass on END/START
    hann = hann_window(38)
    token, confidence = choose_token(batch, 38, hann)
    p = batch[..., :38].softmax(-1)
    assert torch.equal(token, (p * hann).argmax(-1))
    full = batch.softmax(-1)[..., :38] * hann
    assert torch.allclose(confidence, full.gather(-1, token[..., None]).squeeze(-1), atol=1e-7)


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
