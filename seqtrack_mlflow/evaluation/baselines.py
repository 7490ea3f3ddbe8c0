"""Classical trackers from OpenCV (KCF, CSRT, MIL) run on the same frames from the same first box.

They answer "does the trained tracker beat a standard baseline?", which keeping the first box does not.
OpenCV comes from the optional `baselines` extra (`opencv-contrib-python-headless`: KCF and CSRT live in
the contrib modules); without it, asking for a baseline is refused in one line naming the extra.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from types import ModuleType

import numpy as np

from seqtrack_mlflow.config import ConfigError

# name -> OpenCV factory. Each is the tracker's default parameters, as OpenCV ships them.
BASELINES: dict[str, str] = {
    "kcf": "TrackerKCF_create",
    "csrt": "TrackerCSRT_create",
    "mil": "TrackerMIL_create",
}
INSTALL_HINT = "pip install 'seqtrack-mlflow[baselines]' (opencv-contrib-python-headless)"


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


def parse_baselines(text: str) -> tuple[str, ...]:
    """`"kcf,csrt"` -> ("kcf", "csrt"); "" or "none" -> (). Unknown names are refused."""
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    if names in ((), ("none",)):
        return ()
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ConfigError(
            f"baselines={text!r}: unknown tracker {', '.join(unknown)}: use a comma list of "
            f"{', '.join(BASELINES)} or none"
        )
    return tuple(dict.fromkeys(names))


def track_frames(name: str, frames: Iterable[np.ndarray], first_box: np.ndarray) -> np.ndarray:
    """Track RGB uint8 frames from `first_box` (x, y, w, h, frame 1's); (N, 4) boxes, frame 1 included.

    A frame where the tracker reports a loss keeps its previous box, as LaSOT's toolkit scores a
    tracker that outputs nothing new (the box stays where the target was last seen)."""
    cv2 = opencv()
    boxes = list(_track(cv2, name, iter(frames), np.asarray(first_box, dtype=np.float64)))
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _track(
    cv2: ModuleType, name: str, frames: Iterator[np.ndarray], first_box: np.ndarray
) -> Iterator[np.ndarray]:
    tracker = getattr(cv2, BASELINES[name])()
    first = next(frames, None)
    if first is None:
        return
    x, y, w, h = (int(round(v)) for v in first_box)
    tracker.init(cv2.cvtColor(first, cv2.COLOR_RGB2BGR), (x, y, max(w, 1), max(h, 1)))
    box = first_box.copy()
    yield box
    for frame in frames:
        ok, found = tracker.update(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if ok:
            box = np.asarray(found, dtype=np.float64)
        yield box
