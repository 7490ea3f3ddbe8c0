"""GOT-10k metrics as the official GOT-10k toolkit computes them (`got10k/experiments/got10k.py`,
`got10k/utils/metrics.py`): average overlap (AO) and success rates (SR at 0.5 and 0.75).

- Per sequence, the IoU of frames 2..N (the first frame, given to the tracker, is left out), both boxes
  first clipped to the frame (`resolution` of meta_info.ini: x into [0, W], w into [0, W - x], y and h
  alike), IoU = intersection / (union + eps) clipped to [0, 1];
- only the frames where the target is visible at all (`cover > 0`) count;
- overall: AO = the mean IoU of every counted frame of every sequence concatenated (frame-weighted),
  SR_t = the fraction of those frames with IoU > t (strict); the success curve over 101 thresholds
  0..1. Sequence-wise AO is the same on one sequence. The toolkit reports SR0.5; SR0.75 is the same
  rule at 0.75 (what the GOT-10k server reports beside it).

Values here are fractions; the evaluate step logs them in percent (`ao`, `sr50`, `sr75`), as the
paper's table.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq

import numpy as np

THRESHOLDS = np.linspace(0.0, 1.0, 101)  # the toolkit's nbins_iou = 101
EPS = np.finfo(float).eps


def clip_boxes(boxes: np.ndarray, bound: tuple[int, int]) -> np.ndarray:
    """x, y, w, h boxes clipped to a (width, height) frame, as the toolkit's `rect_iou(bound=...)`."""
    out = np.array(boxes, dtype=np.float64, copy=True)
    out[:, 0] = np.clip(out[:, 0], 0, bound[0])
    out[:, 1] = np.clip(out[:, 1], 0, bound[1])
    out[:, 2] = np.clip(out[:, 2], 0, bound[0] - out[:, 0])
    out[:, 3] = np.clip(out[:, 3], 0, bound[1] - out[:, 1])
    return out


def rect_iou(a: np.ndarray, b: np.ndarray, bound: tuple[int, int]) -> np.ndarray:
    """(N,) IoU of clipped x, y, w, h boxes: intersection / (union + eps), in [0, 1]."""
    a, b = clip_boxes(a, bound), clip_boxes(b, bound)
    x1 = np.maximum(a[:, 0], b[:, 0])
    y1 = np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.clip(inter / (union + EPS), 0.0, 1.0)


def sequence_ious(pred: np.ndarray, gt: np.ndarray, cover: np.ndarray, bound: tuple[int, int]) -> np.ndarray:
    """The IoUs a sequence contributes: frames 2..N where `cover > 0`."""
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"predictions {pred.shape} and ground truth {gt.shape} differ: one box per frame")
    return rect_iou(pred[1:], gt[1:], bound)[np.asarray(cover)[1:] > 0]


def summarize(ious: Seq[np.ndarray]) -> dict[str, float | np.ndarray]:
    """AO, SR0.5, SR0.75 (fractions) and the success curve of the concatenated IoUs."""
    joined = np.concatenate([np.asarray(i, dtype=np.float64) for i in ious]) if ious else np.zeros(0)
    if joined.size == 0:
        raise ValueError("no frame to score: every sequence is a single frame or never visible")
    return {
        "ao": float(joined.mean()),
        "sr50": float((joined > 0.5).mean()),
        "sr75": float((joined > 0.75).mean()),
        "success_curve": (joined[:, None] > THRESHOLDS[None, :]).mean(axis=0),
        "frames": int(joined.size),
    }


__all__ = ["THRESHOLDS", "clip_boxes", "rect_iou", "sequence_ious", "summarize"]
