"""GOT-10k AO / SR against an independent, frame-by-frame implementation of the toolkit's formulas
(`got10k/utils/metrics.py: rect_iou` with the frame bound, `experiments/got10k.py: report/_evaluate`)."""

from __future__ import annotations

import numpy as np
import pytest
from got10k_toolkit import toolkit_report

from seqtrack_mlflow.evaluation import got10k_metrics


def _sequence(rng: np.random.Generator, n: int, size: tuple[int, int]):
    width, height = size
    gt = np.column_stack(
        [rng.uniform(-20, width, n), rng.uniform(-20, height, n), rng.uniform(1, 120, (n, 2))]
    )
    pred = gt + rng.normal(0, 12, (n, 4))  # near the truth, sometimes outside the frame or of no size
    pred[rng.random(n) < 0.1] = [width + 5, 3, 10, 10]  # wholly outside: clipped to nothing
    cover = rng.integers(0, 9, n)
    return pred, gt, cover, size


def test_matches_the_toolkit_formulas_on_random_sequences():
    rng = np.random.default_rng(7)
    sequences = [_sequence(rng, n, size) for n, size in ((40, (320, 240)), (7, (64, 48)), (90, (1280, 720)))]
    want = toolkit_report(sequences)
    got = got10k_metrics.summarize([got10k_metrics.sequence_ious(p, g, c, s) for p, g, c, s in sequences])
    for key in ("ao", "sr50", "sr75"):
        assert got[key] == pytest.approx(want[key], rel=1e-12, abs=1e-15), key
    np.testing.assert_allclose(got["success_curve"], want["curve"], rtol=0, atol=1e-12)
    assert got["frames"] == sum(int((c[1:] > 0).sum()) for _, _, c, _ in sequences)


def test_frame_weighted_first_frame_and_hidden_frames_left_out():
    gt = np.array([[0, 0, 10, 10]] * 4, dtype=float)
    pred = np.array([[50, 50, 10, 10], [0, 0, 10, 10], [5, 0, 10, 10], [0, 0, 10, 10]], dtype=float)
    cover = np.array([8, 8, 8, 0])  # the last frame: target not visible, not scored
    ious = got10k_metrics.sequence_ious(pred, gt, cover, (100, 100))
    np.testing.assert_allclose(ious, [1.0, 50 / 150])  # frame 1 (a miss) is the given frame: left out
    long = got10k_metrics.sequence_ious(np.repeat(gt, 3, 0), np.repeat(gt, 3, 0), np.full(12, 8), (100, 100))
    joined = got10k_metrics.summarize([ious, long])
    assert joined["ao"] == pytest.approx((1 + 50 / 150 + 11) / 13)  # frames weigh, not sequences
    assert joined["sr50"] == pytest.approx(12 / 13) and joined["sr75"] == pytest.approx(12 / 13)


def test_boxes_are_clipped_to_the_frame_first():
    gt = np.array([[0, 0, 10, 10], [90, 0, 20, 10]], dtype=float)  # the second reaches past x = 100
    pred = np.array([[0, 0, 10, 10], [90, 0, 10, 10]], dtype=float)
    assert got10k_metrics.sequence_ious(pred, gt, np.ones(2), (100, 100))[0] == pytest.approx(1.0)
