"""Training labels and the tracker's decoding are exact inverses (up to quantisation) in image pixels.

A perfect model predicts its own training labels; decoding them must give back the target box, with an
error below one quantisation step and no bias, for any target and any search crop around it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqtrack_mlflow.evaluation.tracker import tokens_to_image_box
from seqtrack_mlflow.inputs.processing import box_to_crop, crop_window
from seqtrack_mlflow.model.tokens import box_to_tokens

FACTOR = 4.0  # official search factor


def _targets_and_crops(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random 30-200 px targets and the previous boxes their search crops are centred on."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(30.0, 200.0, size=(n, 1))  # sqrt(w * h)
    aspect = np.exp(rng.uniform(-np.log(2.0), np.log(2.0), size=(n, 1)))  # w / h in [1/2, 2]
    wh = scale * np.concatenate([np.sqrt(aspect), 1.0 / np.sqrt(aspect)], axis=1)
    xy = rng.uniform(-50.0, 1200.0, size=(n, 2))
    targets = np.concatenate([xy, wh], axis=1)
    # Previous box: moved by up to 0.3 sqrt(w * h) and resized by up to 30 %, so the target stays inside
    # the crop (clamping to the crop is a separate, official behaviour).
    prev_wh = wh * rng.uniform(0.7, 1.3, size=(n, 2))
    centre = xy + wh / 2 + rng.uniform(-0.3, 0.3, size=(n, 2)) * scale
    return targets, np.concatenate([centre - prev_wh / 2, prev_wh], axis=1)


def _round_trip(targets: np.ndarray, prevs: np.ndarray, size: int, bins: int):
    """Decoded perfect labels (N, 4) and each crop's quantisation step in image pixels (N,)."""
    decoded, steps = [], []
    for target, prev in zip(targets, prevs, strict=True):
        window = crop_window(prev, FACTOR, size)
        label = box_to_tokens(torch.from_numpy(box_to_crop(target, window))[None], size, bins)[0]
        decoded.append(tokens_to_image_box(label, window, bins))
        steps.append((size - 1) / (bins - 1) / window.resize_factor)
    return np.array(decoded), np.array(steps)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, :2], b[:, :2])
    rb = np.minimum(a[:, :2] + a[:, 2:], b[:, :2] + b[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(1)
    return inter / (a[:, 2:].prod(1) + b[:, 2:].prod(1) - inter)


@pytest.mark.parametrize(("size", "bins", "min_iou"), [(256, 4000, 0.98), (384, 4000, 0.98), (64, 200, 0.9)])
def test_perfect_labels_decode_to_the_target_without_bias(size: int, bins: int, min_iou: float) -> None:
    targets, prevs = _targets_and_crops(3000, seed=size + bins)
    decoded, steps = _round_trip(targets, prevs, size, bins)
    step = steps[:, None]
    centre_error = (decoded[:, :2] + decoded[:, 2:] / 2 - targets[:, :2] - targets[:, 2:] / 2) / step
    size_error = (decoded[:, 2:] - targets[:, 2:]) / step
    corner_error = (decoded[:, :2] - targets[:, :2]) / step
    # In quantisation steps: each decoded value is its cell's centre, so within half a step.
    assert np.abs(centre_error).max() <= 0.5 + 1e-3
    assert np.abs(size_error).max() <= 0.5 + 1e-3
    assert np.abs(corner_error).max() < 1.0
    for error in (centre_error, size_error, corner_error):
        assert np.abs(error.mean(0)).max() < 0.03  # no bias (standard error ~0.006 here)
    assert _iou(decoded, targets).min() > min_iou


def test_labels_are_the_official_ones_about_the_crop_centre() -> None:
    """Official label: centre (S - 1)/2 + (c - c_crop) * r and size w * r, / (S - 1), int(v * (bins - 1))."""
    size, bins = 256, 4000
    targets, prevs = _targets_and_crops(2000, seed=7)
    mismatch = []
    for target, prev in zip(targets, prevs, strict=True):
        window = crop_window(prev, FACTOR, size)
        r = window.resize_factor
        c_crop = np.array([window.x0, window.y0]) + window.side / 2
        centre = (size - 1) / 2 + (target[:2] + target[2:] / 2 - c_crop) * r
        official = np.floor(np.concatenate([centre, target[2:] * r]) / (size - 1) * (bins - 1))
        ours = box_to_tokens(torch.from_numpy(box_to_crop(target, window))[None], size, bins)[0]
        mismatch.append(np.abs(ours.numpy() - official))
    mismatch = np.array(mismatch)
    assert mismatch.max() <= 1  # float32 vs float64 at a truncation edge
    assert (mismatch == 0).mean() > 0.99
