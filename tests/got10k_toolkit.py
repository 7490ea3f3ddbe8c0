"""An independent, frame-by-frame implementation of the GOT-10k toolkit's formulas
(`got10k/utils/metrics.py: rect_iou` with the frame bound, `got10k/experiments/got10k.py: report` and
`_evaluate`), for checking the project's vectorised one (evaluation/got10k_metrics.py)."""

from __future__ import annotations

import numpy as np

EPS = np.finfo(float).eps


def toolkit_iou(a: list[float], b: list[float], width: float, height: float) -> float:
    """One frame, written out as the toolkit does it: clip x, y to the frame, then w, h to what is left."""
    boxes = []
    for x, y, w, h in (a, b):
        x, y = min(max(x, 0.0), width), min(max(y, 0.0), height)
        w, h = min(max(w, 0.0), width - x), min(max(h, 0.0), height - y)
        boxes.append((x, y, w, h))
    (ax, ay, aw, ah), (bx, by, bw, bh) = boxes
    iw = max(min(ax + aw, bx + bw) - max(ax, bx), 0.0)
    ih = max(min(ay + ah, by + bh) - max(ay, by), 0.0)
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return min(max(inter / (union + EPS), 0.0), 1.0)


def toolkit_report(sequences: list[tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]]) -> dict:
    """AO, SR0.5, SR0.75 and the 101-point curve: frames 2..N with cover > 0, all sequences concatenated."""
    ious = []
    for pred, gt, cover, (width, height) in sequences:
        for k in range(1, len(gt)):
            if cover[k] > 0:
                ious.append(toolkit_iou(list(pred[k]), list(gt[k]), width, height))
    ious_arr = np.array(ious)
    return {
        "ao": sum(ious) / len(ious),
        "sr50": sum(1 for v in ious if v > 0.5) / len(ious),
        "sr75": sum(1 for v in ious if v > 0.75) / len(ious),
        "curve": [float(np.mean(ious_arr > t)) for t in np.linspace(0, 1, 101)],
    }
