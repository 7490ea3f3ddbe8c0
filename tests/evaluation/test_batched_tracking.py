"""Batched evaluation (`track_sequences`): several sequences in lockstep give each the boxes it gets alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqtrack_mlflow.config import ConfigError, TrackerConfig
from seqtrack_mlflow.datasets.lasot import read_sequence
from seqtrack_mlflow.datasets.synthetic import generate_lasot
from seqtrack_mlflow.evaluation.tracker import SeqTrackTracker, TrackerError, track_sequence, track_sequences

LENGTHS = (7, 3, 5, 2)  # different lengths: sequences drop out (and slots refill) at different frames


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    root = tmp_path_factory.mktemp("lasot")
    out = []
    for k, (name, frames) in enumerate(zip(("airplane", "bicycle", "guitar", "car"), LENGTHS, strict=True)):
        dirs = generate_lasot(
            root / str(k), [name], sequences_per_class=1, frames=frames, size=(160, 120), seed=k
        )
        out.append(read_sequence(dirs[0]))
    return out


def _cfg(**overrides) -> TrackerConfig:
    # A template update every 2 frames whatever the score: per-sequence updates happen inside batches.
    return TrackerConfig(**{"update_interval": 2, "update_threshold": 0.0, **overrides})


@pytest.mark.parametrize("batch", [2, 3, 8])
def test_batched_boxes_equal_one_at_a_time(model, sequences, batch):
    """Exactly the same boxes: a box is a function of the chosen tokens (integers) and the previous box,
    and every op of a frame is per sample (batched GEMM rows, attention, LayerNorm, softmax). Batched
    matrix products could only differ in the last bits of a logit, which would change a box only by
    flipping an exact tie of the argmax; on the development CPU the memory itself is bit-identical."""
    alone = [track_sequence(SeqTrackTracker(model, _cfg()), seq) for seq in sequences]
    together = track_sequences(SeqTrackTracker(model, _cfg()), sequences, batch=batch)
    assert [len(b) for b, _ in together] == list(LENGTHS)
    for (expected, _), (got, fps) in zip(alone, together, strict=True):
        np.testing.assert_array_equal(got, expected)
        assert fps > 0


def test_batched_step_keeps_per_sequence_state(model, sequences):
    tracker = SeqTrackTracker(model, _cfg(update_interval=3))
    states = [tracker.start(seq.frame_path(0), seq.boxes[0]) for seq in sequences[:2]]
    for frame in range(1, 3):  # the second sequence has 3 frames
        tracker.step(states, [seq.frame_path(frame) for seq in sequences[:2]])
    assert [s.frame_id for s in states] == [2, 2]
    assert [s.updates for s in states] == [[], []]
    tracker.step(states[:1], [sequences[0].frame_path(3)])  # the first goes on alone
    assert states[0].updates == [3] and states[1].updates == []
    single = SeqTrackTracker(model, _cfg(update_interval=3))
    single.initialize(sequences[0].frame_path(0), sequences[0].boxes[0])
    for frame in range(1, 4):
        single.track(sequences[0].frame_path(frame))
    torch.testing.assert_close(states[0].templates, single.templates, rtol=0, atol=0)
    np.testing.assert_array_equal(states[0].state, single.state)


def test_max_frames_and_order(model, sequences):
    got = track_sequences(SeqTrackTracker(model, _cfg()), sequences, max_frames=3, batch=2)
    assert [len(b) for b, _ in got] == [min(3, n) for n in LENGTHS]
    for (boxes, _), seq in zip(got, sequences, strict=True):
        np.testing.assert_array_equal(boxes[0], seq.boxes[0])


def test_eval_batch_validation():
    with pytest.raises(ConfigError, match="eval_batch=0 is invalid"):
        TrackerConfig(eval_batch=0).validate()
    with pytest.raises(ConfigError, match="eval_precision=fp16 is invalid"):
        TrackerConfig(eval_precision="fp16").validate()
    TrackerConfig(eval_batch=4, eval_precision="int8").validate()


def test_bad_batch_is_one_line(model, sequences):
    with pytest.raises(TrackerError, match="eval_batch=0") as info:
        track_sequences(SeqTrackTracker(model, _cfg()), sequences, batch=0)
    assert "\n" not in str(info.value)
