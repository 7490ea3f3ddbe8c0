"""LaSOT protocol metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from seqtrack_mlflow.evaluation.metrics import (
    CENTER_THRESHOLDS,
    NORM_THRESHOLDS,
    OVERLAP_THRESHOLDS,
    MetricsError,
    center,
    fix_predictions,
    iou,
    sequence_curves,
    summarize,
)


def _static_gt(n: int, box=(10.0, 10.0, 20.0, 20.0)) -> np.ndarray:
    return np.tile(np.array(box, dtype=np.float64), (n, 1))


def test_thresholds_match_the_toolkit():
    assert len(OVERLAP_THRESHOLDS) == 21 and OVERLAP_THRESHOLDS[-1] == 1.0
    assert len(CENTER_THRESHOLDS) == 51 and CENTER_THRESHOLDS[20] == 20.0
    assert len(NORM_THRESHOLDS) == 51 and NORM_THRESHOLDS[20] == pytest.approx(0.2)


def test_iou_hand_values():
    a = np.array([0.0, 0.0, 10.0, 10.0])
    assert iou(a, a) == 1.0
    assert iou(a, np.array([5.0, 0.0, 10.0, 10.0])) == pytest.approx(50 / 150)
    assert iou(a, np.array([20.0, 20.0, 5.0, 5.0])) == 0.0
    batch = iou(np.stack([a, a]), np.stack([a, [0.0, 0.0, 5.0, 10.0]]))
    np.testing.assert_allclose(batch, [1.0, 0.5])


def test_perfect_tracker_tops_out_at_20_of_21():
    gt = _static_gt(8)
    summary = summarize([sequence_curves(gt.copy(), gt, np.ones(8, bool))])
    assert summary["auc"] == pytest.approx(20 / 21 * 100)
    assert summary["precision"] == pytest.approx(100.0)
    assert summary["norm_precision"] == pytest.approx(100.0)
    assert summary["success_curve"][-1] == 0.0  # IoU > 1 never holds


def test_absent_frames_are_failures_over_the_full_length():
    gt = _static_gt(10)
    valid = np.ones(10, bool)
    valid[[3, 4, 8]] = False
    curves = sequence_curves(gt.copy(), gt, valid)
    summary = summarize([curves])
    assert summary["auc"] == pytest.approx(7 / 10 * 20 / 21 * 100)
    assert summary["precision"] == pytest.approx(70.0)
    assert summary["norm_precision"] == pytest.approx(70.0)
    # even an infinite threshold-like 50 px cannot rescue an absent frame
    assert curves["precision"][-1] == pytest.approx(0.7)


def test_invalid_gt_box_is_a_failure_even_when_flagged_visible():
    gt = _static_gt(4)
    gt[2, 2] = 0.0
    curves = sequence_curves(gt.copy(), gt, np.ones(4, bool))
    assert curves["precision"][20] == pytest.approx(0.75)


def test_known_shift_hand_computed():
    # 20x20 box shifted by (3, 4): centre error 5 px, normalised sqrt(0.15^2 + 0.2^2) = 0.25,
    # IoU = 17*16 / (800 - 272) = 0.5151...; frame 1 is the ground truth (error 0, IoU 1).
    n = 5
    gt = _static_gt(n)
    pred = gt + np.array([3.0, 4.0, 0.0, 0.0])
    curves = sequence_curves(pred, gt, np.ones(n, bool))
    prec = curves["precision"]
    np.testing.assert_allclose(prec[:5], 1 / n)  # thresholds 0..4 px: only frame 1
    np.testing.assert_allclose(prec[5:], 1.0)  # error <= t is inclusive at 5 px
    succ = curves["success"]
    np.testing.assert_allclose(succ[:11], 1.0)  # t = 0 .. 0.50 < 0.515
    np.testing.assert_allclose(succ[11:20], 1 / n)  # t = 0.55 .. 0.95: only frame 1
    assert succ[20] == 0.0
    norm = curves["norm_precision"]
    assert norm[20] == pytest.approx(1 / n)  # 0.25 > 0.20
    assert norm[30] == pytest.approx(1.0)  # 0.25 <= 0.30
    summary = summarize([curves])
    assert summary["auc"] == pytest.approx((11 + 9 / n) / 21 * 100)
    assert summary["precision"] == pytest.approx(100.0)
    assert summary["norm_precision"] == pytest.approx(100 / n)


def test_frame_one_is_the_ground_truth():
    gt = _static_gt(3)
    pred = gt.copy()
    pred[0] = [500.0, 500.0, 1.0, 1.0]
    curves = sequence_curves(pred, gt, np.ones(3, bool))
    assert summarize([curves])["auc"] == pytest.approx(20 / 21 * 100)


def test_nonpositive_size_takes_previous_fixed_box():
    gt = _static_gt(6)
    a = [11.0, 10.0, 20.0, 20.0]
    b = [40.0, 40.0, 5.0, 5.0]
    pred = np.array([[0, 0, 0, 0], a, [99, 99, 0, 10], [99, 99, 10, -1], [np.nan, 0, 5, 5], b], dtype=float)
    fixed = fix_predictions(pred, gt)
    np.testing.assert_array_equal(fixed[0], gt[0])
    np.testing.assert_array_equal(fixed[1:5], np.tile(a, (4, 1)))
    np.testing.assert_array_equal(fixed[5], b)
    # a bad box right after frame 1 inherits the ground truth of frame 1
    pred2 = gt.copy()
    pred2[1] = [300, 300, -5, 5]
    np.testing.assert_array_equal(fix_predictions(pred2, gt)[1], gt[0])
    # and the curves see the fixed boxes: 4 of 6 frames sit 1 px off, 1 is far away
    curves = sequence_curves(pred, gt, np.ones(6, bool))
    assert curves["precision"][0] == pytest.approx(1 / 6)
    assert curves["precision"][1] == pytest.approx(5 / 6)


def test_centre_uses_w_minus_one_over_two():
    np.testing.assert_allclose(center(np.array([0.0, 2.0, 10.0, 5.0])), [4.5, 4.0])


def test_summarize_averages_sequences_equally():
    gt_a = _static_gt(2)
    gt_b = _static_gt(8)
    valid_b = np.zeros(8, bool)
    valid_b[0] = True
    s = summarize([sequence_curves(gt_a, gt_a, np.ones(2, bool)), sequence_curves(gt_b, gt_b, valid_b)])
    assert s["num_sequences"] == 2
    assert s["precision"] == pytest.approx((100 + 12.5) / 2)
    assert s["auc"] == pytest.approx((1 + 1 / 8) / 2 * 20 / 21 * 100)
    assert s["success_curve"].shape == (21,) and s["precision_curve"].shape == (51,)


def test_mismatched_lengths_raise_one_line_error():
    with pytest.raises(MetricsError, match="predictions have 3 boxes") as info:
        sequence_curves(_static_gt(3), _static_gt(4))
    assert "\n" not in str(info.value)
    with pytest.raises(MetricsError):
        summarize([])


def test_plots_write_valid_pngs(tmp_path):
    from PIL import Image

    from seqtrack_mlflow.evaluation.plots import plot_norm_precision, plot_precision, plot_success

    gt = _static_gt(6)
    perfect = summarize([sequence_curves(gt, gt)])
    shifted = sequence_curves(gt + np.array([3.0, 4.0, 0.0, 0.0]), gt)  # a single sequence's curves
    curves = {"perfect": perfect, "shifted": shifted}
    paths = [
        plot_success(curves, tmp_path / "plots" / "success.png"),
        plot_precision(curves, tmp_path / "precision.png"),
        plot_norm_precision({"only": perfect}, tmp_path / "norm.png"),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            assert img.size == (600, 450)
