"""A user's video as a stream of RGB frames: a file decoded with PyAV, or a folder of JPEG/PNG frames.

`open_video` checks what can be checked before a run starts (the path exists, is a video, holds a frame)
by decoding the first frame; `frames()` then streams every frame, that first one included, so a long
video never sits in memory. Every refusal is a `VideoError`: one line naming the input and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

from seqtrack_mlflow.datasets.base import DECODE_ERRORS
from seqtrack_mlflow.messages import collapsed

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
FOLDER_FPS = 30.0  # a frame folder has no rate of its own
FIX = "give a video file (mp4, mov, avi, mkv, webm) or a folder of JPEG/PNG frames"


class VideoError(ValueError):
    """An unusable video input (missing, not a video, no frames, a frame that cannot be read)."""


@dataclass(frozen=True)
class Frame:
    index: int  # 0-based
    time: float  # seconds since the first frame
    image: np.ndarray  # H x W x 3 uint8 RGB


def natural_key(path: Path) -> list:
    """Name order with numbers compared as numbers: frame2.png before frame10.png."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class VideoSource:
    """Frames of one input; `width`, `height`, `fps` and `expected_frames` (None: unknown) are known
    once it is open. Close it (or use it as a context manager) to release the file."""

    name: str
    path: Path
    kind: str  # "file" or "frames"
    width: int
    height: int
    fps: float
    expected_frames: int | None

    def frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the input (nothing to do for a folder)."""

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _set_first(self, image: np.ndarray) -> None:
        self._first = image
        self.height, self.width = image.shape[:2]


class _VideoFile(VideoSource):
    kind = "file"

    def __init__(self, path: Path, fps: float | None) -> None:
        self.path, self.name = path, path.name
        try:
            self._container = av.open(str(path))
        except av.FFmpegError as exc:
            raise VideoError(
                f"video={path} is not a video PyAV can read ({_reason(exc, path)}): {FIX}"
            ) from None
        try:
            streams = self._container.streams.video
            if not streams:
                raise VideoError(f"video={path} holds no video stream: {FIX}")
            self._stream = streams[0]
            self._stream.thread_type = "AUTO"
            rate = self._stream.average_rate or self._stream.guessed_rate
            self._own_rate = float(rate) if rate else None
            self.fps = fps or self._own_rate or FOLDER_FPS
            self._given_fps = fps is not None
            self.expected_frames = self._stream.frames or self._frames_from_duration()
            self._decoded = self._decode()
            first = next(self._decoded, None)
            if first is None:
                raise VideoError(f"video={path} has no frames (none could be decoded): {FIX}")
            self._set_first(first[1])
            self._first_time = first[0]
        except BaseException:
            self._container.close()
            raise

    def _frames_from_duration(self) -> int | None:
        duration = self._stream.duration
        if duration is None or not self._own_rate:
            return None
        return max(1, round(float(duration * self._stream.time_base) * self._own_rate))

    def _decode(self) -> Iterator[tuple[float | None, np.ndarray]]:
        index = 0
        try:
            for frame in self._container.decode(self._stream):
                yield frame.time, upright(frame)
                index += 1
        except av.FFmpegError as exc:
            raise VideoError(
                f"video={self.path}: frame {index} cannot be decoded ({_reason(exc, self.path)}): "
                "re-encode the video (e.g. ffmpeg -i in.mp4 -c:v libx264 out.mp4) or give its frames"
            ) from None

    def frames(self) -> Iterator[Frame]:
        yield Frame(0, 0.0, self._first)
        for index, (time, image) in enumerate(self._decoded, start=1):
            if image.shape[:2] != (self.height, self.width):
                raise VideoError(
                    f"video={self.path}: frame {index} is {image.shape[1]}x{image.shape[0]}, the first "
                    f"{self.width}x{self.height}: give a video of one frame size"
                )
            yield Frame(index, self._time(index, time), image)

    def _time(self, index: int, time: float | None) -> float:
        if self._given_fps or time is None or self._first_time is None:
            return index / self.fps
        return time - self._first_time

    def close(self) -> None:
        self._container.close()


class _FrameFolder(VideoSource):
    kind = "frames"

    def __init__(self, path: Path, fps: float | None) -> None:
        self.path, self.name = path, path.name
        self.files = sorted(
            (p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), key=natural_key
        )
        if not self.files:
            nested = [d.name for d in sorted(path.iterdir()) if d.is_dir() and _has_images(d)]
            hint = f" ({nested[0]}/ does: pass video={path / nested[0]})" if nested else ""
            raise VideoError(f"video={path} holds no JPEG/PNG frames{hint}: {FIX}")
        self.fps = fps or FOLDER_FPS
        self.expected_frames = len(self.files)
        self._set_first(self._read(self.files[0]))

    def _read(self, file: Path) -> np.ndarray:
        try:
            with Image.open(file) as img:
                return np.asarray(img.convert("RGB"))
        except DECODE_ERRORS as exc:
            raise VideoError(
                f"video={self.path}: frame {file.name} cannot be read ({_reason(exc, file)}): "
                "replace or remove that file"
            ) from None

    def frames(self) -> Iterator[Frame]:
        yield Frame(0, 0.0, self._first)
        for index, file in enumerate(self.files[1:], start=1):
            image = self._read(file)
            if image.shape[:2] != (self.height, self.width):
                raise VideoError(
                    f"video={self.path}: frame {file.name} is {image.shape[1]}x{image.shape[0]}, the first "
                    f"{self.width}x{self.height}: give frames of one size"
                )
            yield Frame(index, index / self.fps, image)


def upright(frame: av.VideoFrame) -> np.ndarray:
    """The frame as RGB, the way a player shows it: a phone's portrait clip is stored landscape with a
    display matrix (FFmpeg's `rotation`: degrees counterclockwise, -90 for "turn 90 degrees clockwise"),
    and the user's box is drawn on the turned picture."""
    image = frame.to_ndarray(format="rgb24")
    turns = round(getattr(frame, "rotation", 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


def _reason(exc: BaseException, path: Path) -> str:
    """The library's message without the file name it repeats (the line names the input already)."""
    text = str(exc.strerror if isinstance(exc, av.FFmpegError) and exc.strerror else exc)
    for spelling in (repr(str(path)), str(path)):
        text = text.replace(spelling, "")
    if isinstance(exc, Image.UnidentifiedImageError) or text.startswith("cannot identify image file"):
        return "not an image file"
    return collapsed(text.strip(" :"), 120) or type(exc).__name__


def open_video(path: Path, fps: float | None = None) -> VideoSource:
    """The frames of `path`, a video file or a folder of frames; `fps` overrides the input's rate."""
    if not path.exists():
        raise VideoError(f"video={path}: no such file or folder: {FIX}")
    if path.is_dir():
        return _FrameFolder(path, fps)
    return _VideoFile(path, fps)


__all__ = ["FIX", "FOLDER_FPS", "Frame", "VideoError", "VideoSource", "natural_key", "open_video"]
