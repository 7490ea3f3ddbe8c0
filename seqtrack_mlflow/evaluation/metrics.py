"""LaSOT one-pass evaluation (success/AUC, precision, normalised precision), vectorised over frames.

Follows the official LaSOT toolkit (and pytracking, which matches it), so numbers are comparable with
published results:
- frame 1 of the prediction is replaced by the ground truth (the tracker was initialised on it);
- a predicted box with w or h <= 0 (or non-finite) takes the previous frame's already-fixed box;
- frames where the target is not visible, or whose ground-truth box is invalid, count as failures
  (IoU -1, centre error +inf) and stay in the denominator (the full sequence length), so a perfect
  tracker scores 20/21 of the visible fraction in AUC (the IoU > 1 threshold can never succeed);
- success when IoU > t (strict), precision when centre error <= t; centre = x + (w - 1) / 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

OVERLAP_THRESHOLDS = np.linspace(0.0, 1.0, 21)
CENTER_THRESHOLDS = np.arange(51, dtype=np.float64)  # pixels
NORM_THRESHOLDS = np.linspace(0.0, 0.5, 51)
PRECISION_AT = 20  # index of 20 px in CENTER_THRESHOLDS
NORM_PRECISION_AT = 20  # index of 0.20 in NORM_THRESHOLDS


class MetricsError(ValueError):
    """Predictions and ground truth that cannot be compared (one-line message)."""


def _as_boxes(boxes: np.ndarray | Sequence, name: str) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise MetricsError(f"{name} must be an (N, 4) array of x, y, w, h boxes, got shape {arr.shape}")
    return arr


def iou(pred_xywh: np.ndarray, gt_xywh: np.ndarray) -> np.ndarray:
    """IoU of (..., 4) x, y, w, h boxes; 0 where the union is empty.

    Continuous boxes [x, x + w): identical to the toolkit's inclusive-pixel formula
    (right = x + w - 1, overlap + 1).
    """
    p = np.asarray(pred_xywh, dtype=np.float64)
    g = np.asarray(gt_xywh, dtype=np.float64)
    tl = np.maximum(p[..., :2], g[..., :2])
    br = np.minimum(p[..., :2] + p[..., 2:], g[..., :2] + g[..., 2:])
    inter = np.clip(br - tl, 0.0, None).prod(axis=-1)
    union = p[..., 2:].prod(axis=-1) + g[..., 2:].prod(axis=-1) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return out


def center(boxes_xywh: np.ndarray) -> np.ndarray:
    """Toolkit centre of inclusive-pixel boxes: x + (w - 1) / 2 (not x + w / 2)."""
    b = np.asarray(boxes_xywh, dtype=np.float64)
    return b[..., :2] + (b[..., 2:] - 1.0) / 2.0


def fix_predictions(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Frame 1 := ground truth; boxes with w or h <= 0 (or NaN/inf) take the previous fixed box.

    Forward fill by index: each frame points at the last frame whose box is usable, so a run of bad
    boxes all inherit the last good one (frame 1 is always usable after the override).
    """
    fixed = np.array(pred, dtype=np.float64, copy=True)
    fixed[0] = gt[0]
    usable = np.isfinite(fixed).all(axis=1) & (fixed[:, 2] > 0) & (fixed[:, 3] > 0)
    usable[0] = True
    source = np.where(usable, np.arange(len(fixed)), 0)
    return fixed[np.maximum.accumulate(source)]


def sequence_curves(
    pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Per-sequence success (21), precision (51) and normalised precision (51) curves, as fractions.

    `valid` is the target-visible flag per frame (Sequence.visible); frames with an invalid gt box are
    excluded in any case. The denominator is always the full sequence length.
    """
    gt = _as_boxes(gt, "ground truth")
    pred = _as_boxes(pred, "predictions")
    n = len(gt)
    if n == 0:
        raise MetricsError("ground truth is empty: evaluate sequences with at least one frame")
    if len(pred) != n:
        raise MetricsError(
            f"predictions have {len(pred)} boxes but the ground truth has {n}: "
            "pass one box per ground-truth frame (or cut the ground truth to the tracked frames)"
        )
    good_gt = np.isfinite(gt).all(axis=1) & (gt[:, 2] > 0) & (gt[:, 3] > 0)
    if valid is None:
        valid = good_gt
    else:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != (n,):
            raise MetricsError(f"valid flags have shape {valid.shape}, expected ({n},): one flag per frame")
        valid = valid & good_gt

    pred = fix_predictions(pred, gt)
    overlap = np.where(valid, iou(pred, gt), -1.0)
    delta = center(pred) - center(gt)
    err = np.where(valid, np.linalg.norm(delta, axis=1), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        err_norm = np.where(valid, np.linalg.norm(delta / gt[:, 2:], axis=1), np.inf)

    return {
        "success": (overlap[None, :] > OVERLAP_THRESHOLDS[:, None]).mean(axis=1),
        "precision": (err[None, :] <= CENTER_THRESHOLDS[:, None]).mean(axis=1),
        "norm_precision": (err_norm[None, :] <= NORM_THRESHOLDS[:, None]).mean(axis=1),
    }


def summarize(curves: Sequence[dict[str, np.ndarray]]) -> dict:
    """Average per-sequence curves (every sequence weighs the same, as in the toolkit).

    Returns auc, precision (P@20 px) and norm_precision (P_norm@0.20) in percent, the mean curves as
    fractions (success_curve, precision_curve, norm_precision_curve) and num_sequences.
    """
    if not curves:
        raise MetricsError("no sequences to summarise: evaluate at least one sequence")
    success = np.mean([c["success"] for c in curves], axis=0)
    precision = np.mean([c["precision"] for c in curves], axis=0)
    norm_precision = np.mean([c["norm_precision"] for c in curves], axis=0)
    return {
        "auc": float(success.mean() * 100.0),
        "precision": float(precision[PRECISION_AT] * 100.0),
        "norm_precision": float(norm_precision[NORM_PRECISION_AT] * 100.0),
        "success_curve": success,
        "precision_curve": precision,
        "norm_precision_curve": norm_precision,
        "num_sequences": len(curves),
    }


__all__ = [
    "CENTER_THRESHOLDS",
    "MetricsError",
    "NORM_THRESHOLDS",
    "OVERLAP_THRESHOLDS",
    "center",
    "fix_predictions",
    "iou",
    "sequence_curves",
    "summarize",
]
