"""The `track` entry point's own settings: the user's video and the target's box in its first frame.

Kept apart from `settings.py` (which lists this class in SETTINGS_CLASSES) since only `track` takes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from seqtrack_mlflow.config.declare import ConfigError, check_fields, setting

BOX_FIX = "x,y,w,h in pixels of the first frame (4 numbers, w > 0 and h > 0), e.g. -P box=120,80,60,40"


def parse_box(text: str) -> tuple[float, float, float, float]:
    """`"120,80,60,40"` -> (120.0, 80.0, 60.0, 40.0): the LaSOT x, y, w, h of the target; one
    ConfigError line for anything else (3 or 5 numbers, words, nan, a size of 0 or less)."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        box = valid_box([float(p) for p in parts])
    except ValueError:
        box = None
    if box is None:
        raise ConfigError(f"box={text!r} is invalid: use {BOX_FIX}")
    return box


def valid_box(values: list[float]) -> tuple[float, float, float, float] | None:
    """The one rule for a first box, from the CLI or a served request: 4 finite numbers with w, h > 0
    -> (x, y, w, h); None otherwise (each caller says why in its own words)."""
    if len(values) != 4 or not all(math.isfinite(v) for v in values) or min(values[2:]) <= 0:
        return None
    x, y, w, h = values
    return x, y, w, h


def _is_box(text: str) -> bool:
    try:
        parse_box(text)
    except ConfigError:
        return False
    return True


@dataclass(frozen=True)
class VideoConfig:
    """What `track` follows: a video file or a folder of frames, and the target's first box."""

    video: str | None = setting(
        None,
        "the video to track in: a file (mp4, mov, avi, mkv, webm) or a folder of JPEG/PNG frames "
        "(in name order, numbers compared as numbers)",
        steps=("track",),
        required=("track",),
    )
    box: str | None = setting(
        None,
        "the target in the first frame: x,y,w,h in pixels (LaSOT order), e.g. 120,80,60,40",
        steps=("track",),
        required=("track",),
        check=(_is_box, BOX_FIX),
    )
    fps: float | None = setting(
        None,
        "frames per second: the times in boxes.csv and tracked.mp4's rate",
        steps=("track",),
        unset="a video file's own rate; 30 for a frame folder",
        check=(lambda v: 0 < v <= 1000, "a rate in (0, 1000] frames per second"),
    )

    def validate(self) -> None:
        check_fields(self)
