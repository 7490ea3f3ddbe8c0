"""OpenCV's classical trackers follow a moving target from the first box; bad names are refused."""

import numpy as np
import pytest

from seqtrack_mlflow.config import ConfigError
from seqtrack_mlflow.evaluation.baselines import BASELINES, parse_baselines, track_frames


def _moving_square(frames: int = 12) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    background = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    video, truth = [], []
    for t in range(frames):
        frame = background.copy()
        frame[40 + t : 70 + t, 50 + 2 * t : 80 + 2 * t] = [255, 0, 0]
        video.append(frame)
        truth.append([50 + 2 * t, 40 + t, 30, 30])
    return video, np.asarray(truth, dtype=np.float64)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_each_baseline_follows_a_moving_target(name):
    video, truth = _moving_square()
    boxes = track_frames(name, video, truth[0])
    assert boxes.shape == (len(video), 4)
    np.testing.assert_array_equal(boxes[0], truth[0])
    centre = boxes[-1, :2] + boxes[-1, 2:] / 2
    assert np.abs(centre - (truth[-1, :2] + 15)).max() < 6  # it moved 22 px right, 11 down


def test_parse_baselines():
    assert parse_baselines("KCF, csrt,kcf") == ("kcf", "csrt")
    assert parse_baselines("none") == () and parse_baselines("") == ()
    with pytest.raises(ConfigError, match="unknown tracker tld"):
        parse_baselines("kcf,tld")
