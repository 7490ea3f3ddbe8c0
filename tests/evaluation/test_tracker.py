"""SeqTrack inference: box mapping, clipping, template update and window penalty on a real tiny model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from seqtrack_mlflow.config import TrackerConfig
from seqtrack_mlflow.datasets.lasot import read_sequence
from seqtrack_mlflow.evaluation.tracker import (
    SeqTrackTracker,
    TrackerError,
    _Frame,
    clip_box,
    tokens_to_image_box,
    track_sequence,
)
from seqtrack_mlflow.inputs.processing import box_to_crop, crop_window

WIDTH, HEIGHT, FRAMES = 160, 120, 7


def _crop_tokens(crop_xywh: np.ndarray, size: int, bins: int) -> torch.Tensor:
    """Unquantised (cx, cy, w, h) tokens of continuous crop pixels, in the label convention shifted by
    half a bin (so that decoding the cell centre gives the box back exactly)."""
    cxcywh = np.concatenate([crop_xywh[:2] + crop_xywh[2:] / 2 - 0.5, crop_xywh[2:]])
    return torch.tensor(cxcywh / (size - 1) * (bins - 1) - 0.5, dtype=torch.float64)


# ---------------------------------------------------------------- pure geometry


def test_clip_box_keeps_margin_inside_image():
    boxes = np.array(
        [
            [20.0, 15.0, 30.0, 40.0],  # inside: unchanged
            [-50.0, 20.0, 30.0, 30.0],  # left of the image
            [150.0, 20.0, 30.0, 30.0],  # right of the image
            [-10.0, -10.0, 200.0, 200.0],  # covers the image
            [40.0, 110.0, 5.0, 2.0],  # tiny, at the bottom
        ]
    )
    out = clip_box(boxes, 100, 80, margin=10)
    np.testing.assert_allclose(out[0], boxes[0])
    np.testing.assert_allclose(out[1], [0.0, 20.0, 10.0, 30.0])
    np.testing.assert_allclose(out[2], [90.0, 20.0, 10.0, 30.0])
    np.testing.assert_allclose(out[3], [0.0, 0.0, 100.0, 80.0])
    np.testing.assert_allclose(out[4], [40.0, 70.0, 10.0, 10.0])
    assert (out[:, 2:] >= 10).all()
    assert (out[:, 0] >= 0).all() and (out[:, 0] + out[:, 2] <= 100).all()
    assert (out[:, 1] >= 0).all() and (out[:, 1] + out[:, 3] <= 80).all()


def test_crop_centre_maps_back_to_previous_centre():
    bins, size = 4000, 64
    prev = np.array([100.0, 80.0, 40.0, 40.0])  # centre (120, 100); crop corner (40, 20) is integral
    window = crop_window(prev, 4.0, size)
    # Token 1999 is the cell [1999, 2000) / 3999 around 0.5: its centre is the crop centre exactly.
    box = tokens_to_image_box(torch.tensor([1999, 1999, 400, 400]), window, bins)
    np.testing.assert_allclose(box[:2] + box[2:] / 2, [120.0, 100.0], atol=1e-4)


def test_back_mapping_inverts_box_to_crop():
    bins, size = 4000, 64
    for prev in ([100.3, 80.7, 37.0, 41.0], [-5.0, 3.2, 12.5, 60.0]):
        window = crop_window(np.array(prev), 4.0, size)
        target = np.array([95.2, 70.9, 30.0, 45.5])
        tokens = _crop_tokens(box_to_crop(target, window), size, bins)
        np.testing.assert_allclose(tokens_to_image_box(tokens, window, bins), target, atol=1e-4)


def test_back_mapping_is_the_official_formula_about_the_crop_centre():
    bins, size = 4000, 64
    prev = np.array([100.3, 80.7, 37.0, 41.0])
    window = crop_window(prev, 4.0, size)
    tokens = torch.tensor([1500, 2400, 900, 1200])
    ours = tokens_to_image_box(tokens, window, bins)
    r = window.resize_factor
    # Inverse of the official labels ((S - 1)/2 + (c - c_crop) * r, / (S - 1)), at the cell centre.
    t = (tokens.double().numpy() + 0.5) / (bins - 1)
    c_crop = np.array([window.x0, window.y0]) + window.side / 2
    centre = c_crop + (t[:2] * (size - 1) - (size - 1) / 2) / r
    wh = t[2:] * (size - 1) / r
    np.testing.assert_allclose(ours, np.concatenate([centre - wh / 2, wh]), atol=1e-6)
    # Official decoding: tokens / (bins - 1) * S / r + (prev_centre - 0.5 * S / r). Apart by the
    # rounding of the crop corner (<= 0.5 image px), the S / (S - 1) stretch and half a bin.
    t_official = tokens.double().numpy() / (bins - 1) * size / r
    prev_centre = prev[:2] + prev[2:] / 2
    official_centre = t_official[:2] + prev_centre - 0.5 * size / r
    np.testing.assert_allclose(wh, t_official[2:] * (size - 1) / size, rtol=1e-3)
    assert np.abs(centre - official_centre).max() <= 0.5 + 1.0 / r


# ---------------------------------------------------------------- real tiny model


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    """A LaSOT-layout sequence: a textured square moving over a noisy background."""
    seq_dir = tmp_path_factory.mktemp("lasot") / "airplane" / "airplane-3"
    (seq_dir / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    background = rng.integers(0, 120, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    patch = rng.integers(150, 256, size=(24, 24, 3), dtype=np.uint8)
    boxes = []
    for i in range(FRAMES):
        x, y = 40 + 4 * i, 30 + 2 * i
        frame = background.copy()
        frame[y : y + 24, x : x + 24] = patch
        Image.fromarray(frame).save(seq_dir / "img" / f"{i + 1:08d}.jpg", quality=92)
        boxes.append(f"{x},{y},24,24")
    (seq_dir / "groundtruth.txt").write_text("\n".join(boxes) + "\n")
    (seq_dir / "full_occlusion.txt").write_text(",".join("0" * FRAMES))
    (seq_dir / "out_of_view.txt").write_text(",".join("0" * FRAMES))
    (seq_dir / "nlp.txt").write_text("a bright square\n")
    return read_sequence(seq_dir)


def _cfg(**overrides) -> TrackerConfig:
    return TrackerConfig(**{"update_interval": 450, **overrides})


def test_track_sequence_boxes_inside_image(model, sequence):
    tracker = SeqTrackTracker(model, _cfg())
    boxes, fps = track_sequence(tracker, sequence)
    assert boxes.shape == (FRAMES, 4)
    np.testing.assert_array_equal(boxes[0], sequence.boxes[0])
    tracked = boxes[1:]
    assert np.isfinite(tracked).all()
    assert (tracked[:, 2:] >= 10).all()
    assert (tracked[:, 0] >= 0).all() and (tracked[:, 0] + tracked[:, 2] <= WIDTH + 1e-9).all()
    assert (tracked[:, 1] >= 0).all() and (tracked[:, 1] + tracked[:, 3] <= HEIGHT + 1e-9).all()
    assert fps > 0
    assert 0 < tracker.last_score <= 40  # 4 probabilities * 10
    again, _ = track_sequence(tracker, sequence)  # re-initialising resets all state
    np.testing.assert_array_equal(again, boxes)
    short, _ = track_sequence(tracker, sequence, max_frames=3)
    np.testing.assert_array_equal(short, boxes[:3])


def test_path_and_array_inputs_agree(model, sequence):
    """A frame given as a JPEG path is cropped by the region decoder (at reduced scale where the crop
    shrinks it), an array from its full-resolution pixels: the crops agree to a few grey levels, and
    so does the first tracked box. (Later boxes of this random-weight model may then part: a near-tie
    between two tokens flips on a one-level difference.)"""
    frames = [np.asarray(Image.open(sequence.frame_path(i)).convert("RGB")) for i in range(3)]
    tracker = SeqTrackTracker(model, _cfg())
    tracker.initialize(frames[0], sequence.boxes[0])
    from_array = tracker.track(frames[1])[0]
    tracker.initialize(sequence.frame_path(0), sequence.boxes[0])
    from_path = tracker.track(sequence.frame_path(1))[0]
    np.testing.assert_allclose(from_array, from_path)
    window = crop_window(sequence.boxes[1], 4.0, model.cfg.search_size)
    by_path = _Frame(sequence.frame_path(1)).crop(window).astype(np.float64)
    by_array = _Frame(frames[1]).crop(window).astype(np.float64)
    assert np.abs(by_path - by_array).mean() < 2.0


def test_template_update_exactly_at_interval(model, sequence):
    tracker = SeqTrackTracker(model, _cfg(update_interval=3, update_threshold=0.0))
    tracker.initialize(sequence.frame_path(0), sequence.boxes[0])
    initial = tracker.templates.clone()
    size = model.cfg.template_size
    assert initial.shape == (1, 2, 3, size, size)
    torch.testing.assert_close(initial[:, 0], initial[:, 1])  # [z, z]
    history = []
    for i in range(1, FRAMES):
        tracker.track(sequence.frame_path(i))
        history.append(tracker.templates.clone())
    assert tracker.updates == [3, 6]
    for frame_id, templates in enumerate(history, start=1):
        torch.testing.assert_close(templates[:, 0], initial[:, 0])  # the first template never changes
        changed = not torch.equal(templates[:, 1], initial[:, 1])
        assert changed == (frame_id >= 3), frame_id
    assert not torch.equal(history[5][:, 1], history[4][:, 1])  # replaced again at frame 6

    never = SeqTrackTracker(model, _cfg(update_interval=1, update_threshold=1e9))
    track_sequence(never, sequence)
    assert never.updates == []
    torch.testing.assert_close(never.templates[:, 1], initial[:, 1])


def test_window_penalty_changes_predictions(model, sequence):
    with_window, _ = track_sequence(SeqTrackTracker(model, _cfg(window_penalty=True)), sequence)
    without, _ = track_sequence(SeqTrackTracker(model, _cfg(window_penalty=False)), sequence)
    assert not np.allclose(with_window[1:], without[1:])


class _FixedHead(torch.nn.Module):
    """Stands in for the output head: the same logits at every step, whatever the decoder state."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(*hidden.shape[:-1], -1)


def test_update_score_is_the_official_confidence(model, sequence):
    bins, chosen, peak = model.cfg.bins, 20, 5.0
    logits = torch.zeros(bins + 2)
    logits[chosen] = peak
    # A copy: the module-scoped model keeps its head (monkeypatch's undo of a submodule attribute is
    # not the same across pytest versions: 9.2 deletes it).
    model = copy.deepcopy(model)
    model.head = _FixedHead(logits)
    # Softmax over the whole vocabulary (bins + END + START), not renormalised over the bins; the cx and
    # cy values are windowed (and the window keeps the peak the argmax); 10 x the sum of the four.
    p = np.exp(peak) / (np.exp(peak) + bins + 1)
    hann = np.hanning(bins)[chosen]
    expected = 10 * (2 * p * hann + 2 * p)
    tracker = SeqTrackTracker(model, _cfg(update_interval=1, update_threshold=expected + 1e-3))
    tracker.initialize(sequence.frame_path(0), sequence.boxes[0])
    _, score = tracker.track(sequence.frame_path(1))
    assert score == pytest.approx(expected, abs=1e-4)  # float32
    assert tracker.updates == []  # not above the threshold
    lower = SeqTrackTracker(model, _cfg(update_interval=1, update_threshold=expected - 1e-3))
    lower.initialize(sequence.frame_path(0), sequence.boxes[0])
    lower.track(sequence.frame_path(1))
    assert lower.updates == [1]


def test_from_weights_rebuilds_the_same_tracker(model, sequence):
    state = {f"module.{k}": v for k, v in model.state_dict().items()}  # DDP-style prefix is accepted
    restored = SeqTrackTracker.from_weights(model.cfg, state, _cfg(), "cpu")
    assert restored.model.cfg.pretrained == "none"
    expected, _ = track_sequence(SeqTrackTracker(model, _cfg()), sequence, max_frames=3)
    got, _ = track_sequence(restored, sequence, max_frames=3)
    np.testing.assert_allclose(got, expected)
    with pytest.raises(TrackerError, match="do not fit its model config"):
        SeqTrackTracker.from_weights(model.cfg, {}, _cfg())


def test_user_errors_are_one_line(model, sequence):
    tracker = SeqTrackTracker(model, _cfg())
    with pytest.raises(TrackerError, match="before initialize"):
        tracker.track(sequence.frame_path(1))
    with pytest.raises(TrackerError, match="w > 0"):
        tracker.initialize(sequence.frame_path(0), [10, 10, 0, 5])
    with pytest.raises(TrackerError, match="HxWx3 uint8") as info:
        tracker.initialize(np.zeros((10, 10), np.float32), [1, 1, 5, 5])
    assert "\n" not in str(info.value)
    with pytest.raises(TrackerError, match="update_interval"):
        SeqTrackTracker(model, _cfg(update_interval=0))
