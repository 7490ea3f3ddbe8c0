"""OpenCV's classical trackers follow a moving target from the first box; the `baselines` setting's
default, its one spelling and its refusals (unknown names, other protocols, no OpenCV)."""

import sys

import numpy as np
import pytest

from seqtrack_mlflow.config import ConfigError, TrackerConfig
from seqtrack_mlflow.evaluation.baselines import (
    BASELINES,
    baseline_names,
    parse_baselines,
    resolve_baselines,
    track_frames,
)


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


def test_unset_is_on_for_the_demo_and_off_for_full_benchmarks():
    assert resolve_baselines(TrackerConfig(), "synthetic").baselines == "kcf,csrt,mil"
    for source in ("local", "hub"):
        assert resolve_baselines(TrackerConfig(), source).baselines == "none"
    for benchmark in ("got10k_val", "got10k_test", "trackingnet_test", "lasot_ext"):
        assert resolve_baselines(TrackerConfig(benchmark=benchmark), "synthetic").baselines == "none"
    # Given: one spelling, whatever the source; resolving twice changes nothing.
    given = resolve_baselines(TrackerConfig(baselines="CSRT, kcf"), "local")
    assert given.baselines == "csrt,kcf" and resolve_baselines(given, "synthetic") == given
    assert resolve_baselines(TrackerConfig(baselines="none"), "synthetic").baselines == "none"
    assert baseline_names(given) == ("csrt", "kcf") and baseline_names(TrackerConfig(baselines="none")) == ()


def test_unknown_names_and_other_protocols_are_refused():
    with pytest.raises(ConfigError, match=r"^baselines=kcf,tld is invalid: use a comma list of kcf, csrt"):
        TrackerConfig(baselines="kcf,tld").validate()
    with pytest.raises(ConfigError, match="not benchmark=got10k_val: drop -P baselines"):
        resolve_baselines(TrackerConfig(benchmark="got10k_val", baselines="kcf"), "local")


def test_without_opencv_asking_for_baselines_is_one_line(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` raises ImportError, as when not installed
    with pytest.raises(ConfigError) as given:
        resolve_baselines(TrackerConfig(baselines="mil"), "local")
    with pytest.raises(ConfigError) as default:
        resolve_baselines(TrackerConfig(), "synthetic")
    for exc, start in ((given, "baselines=mil: "), (default, "baselines=kcf,csrt,mil (the default for")):
        message = str(exc.value)
        assert "\n" not in message and message.startswith(start), message
        assert "pip install -e '.[baselines]'" in message and message.endswith("or -P baselines=none")
    # Without baselines nothing needs OpenCV.
    assert resolve_baselines(TrackerConfig(), "local").baselines == "none"
    assert resolve_baselines(TrackerConfig(baselines="none"), "synthetic").baselines == "none"
