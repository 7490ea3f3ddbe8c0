"""Classical trackers from OpenCV (KCF, CSRT, MIL) run on the same frames from the same first box.

They answer "does the trained tracker beat a standard baseline?", which keeping the first box does not.
OpenCV comes from the optional `baselines` extra (`opencv-contrib-python-headless`: KCF and CSRT live in
the contrib modules); without it, asking for a baseline is refused in one line naming the extra.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
from collections.abc import Iterable, Iterator
from types import ModuleType

import numpy as np

from seqtrack_mlflow.config import ConfigError, TrackerConfig
from seqtrack_mlflow.config.tracker import BASELINE_TRACKERS, parse_baselines

# name -> OpenCV factory. Each is the tracker's default parameters, as OpenCV ships them.
BASELINES: dict[str, str] = dict(
    zip(BASELINE_TRACKERS, ("TrackerKCF_create", "TrackerCSRT_create", "TrackerMIL_create"), strict=True)
)
INSTALL_HINT = "pip install -e '.[baselines]' (opencv-contrib-python-headless)"
# The demo (synthetic data, LaSOT protocol) scores them by default: a few seconds beside minutes of
# training. Full benchmarks (real data, GOT-10k, TrackingNet) do not: hours of CPU for a known number.
DEMO_DEFAULT = ",".join(BASELINE_TRACKERS)


def opencv() -> ModuleType:
    """OpenCV with the contrib trackers, or a ConfigError naming the extra to install."""
    try:
        import cv2
    except ImportError:
        raise ConfigError(f"classical baselines need OpenCV: {INSTALL_HINT}") from None
    missing = [name for name, factory in BASELINES.items() if not hasattr(cv2, factory)]
    if missing:
        raise ConfigError(
            f"this OpenCV ({cv2.__version__}) lacks the {', '.join(missing)} tracker(s): {INSTALL_HINT}"
        )
    return cv2


def resolve_baselines(cfg: TrackerConfig, source: str) -> TrackerConfig:
    """`cfg` with `baselines` as scored, in one spelling ("kcf,csrt" or "none"): unset is kcf,csrt,mil
    for the demo (synthetic data on the LaSOT protocol), else none. Refuses, before any run starts, a
    name it does not know, a benchmark not scored with LaSOT's protocol, or a missing OpenCV."""
    default = DEMO_DEFAULT if source == "synthetic" and cfg.benchmark == "lasot" else "none"
    names = parse_baselines(default if cfg.baselines is None else cfg.baselines)
    if names and cfg.benchmark not in ("lasot", "lasot_ext"):
        raise ConfigError(
            f"baselines are scored with LaSOT's protocol, not benchmark={cfg.benchmark}: "
            "drop -P baselines or use benchmark=lasot or lasot_ext"
        )
    if names:
        try:
            opencv()
        except ConfigError as exc:
            given = "" if cfg.baselines is not None else f" (the default for source={source})"
            raise ConfigError(f"baselines={','.join(names)}{given}: {exc}, or -P baselines=none") from None
    return dataclasses.replace(cfg, baselines=",".join(names) or "none")


def baseline_names(cfg: TrackerConfig) -> tuple[str, ...]:
    """The baselines of a resolved `cfg`."""
    return parse_baselines(cfg.baselines or "none")


def track_frames(name: str, frames: Iterable[np.ndarray], first_box: np.ndarray) -> np.ndarray:
    """Track RGB uint8 frames from `first_box` (x, y, w, h, frame 1's); (N, 4) boxes, frame 1 included."""
    return track_together((name,), frames, first_box)[name]


def track_together(
    names: tuple[str, ...], frames: Iterable[np.ndarray], first_box: np.ndarray
) -> dict[str, np.ndarray]:
    """Each of `names` tracks the same frames (each decoded once, for all of them) from `first_box`:
    name -> (N, 4) boxes, frame 1's = `first_box`.

    A frame where a tracker reports a loss keeps its previous box, as LaSOT's toolkit scores a
    tracker that outputs nothing new (the box stays where the target was last seen)."""
    cv2 = opencv()
    first_box = np.asarray(first_box, dtype=np.float64)
    steps = _track(cv2, names, iter(frames), first_box)
    boxes = np.asarray(list(steps), dtype=np.float64).reshape(-1, len(names), 4)
    return {name: boxes[:, i] for i, name in enumerate(names)}


def _track(
    cv2: ModuleType, names: tuple[str, ...], frames: Iterator[np.ndarray], first_box: np.ndarray
) -> Iterator[list[np.ndarray]]:
    first = next(frames, None)
    if first is None:
        return
    x, y, w, h = (int(round(v)) for v in first_box)
    bgr = cv2.cvtColor(first, cv2.COLOR_RGB2BGR)
    _seed_rand()
    trackers = [getattr(cv2, BASELINES[name])() for name in names]
    for tracker in trackers:
        tracker.init(bgr, (x, y, max(w, 1), max(h, 1)))
    boxes = [first_box.copy() for _ in names]
    yield list(boxes)
    for frame in frames:
        bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        for i, tracker in enumerate(trackers):
            ok, found = tracker.update(bgr)
            if ok:
                boxes[i] = np.asarray(found, dtype=np.float64)
        yield list(boxes)


def _seed_rand() -> None:
    """Seed C's `rand()`, which OpenCV's MIL draws its Haar features and samples from (measured: unseeded,
    the same frames give boxes 2 px apart from run to run): seeded per sequence, a sequence's boxes do
    not depend on what ran before. Where the C library cannot be loaded (Windows) MIL stays unseeded."""
    with contextlib.suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(None).srand(0)
