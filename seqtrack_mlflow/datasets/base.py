"""The dataset interface: the `Sequence` record every reader returns, the errors every reader raises,
frame checks, and the `Dataset` protocol a registry entry implements.

Nothing downstream (selection, the input pipeline, the tracker) knows which dataset a sequence came from:
it sees a `Sequence` (frames on disk, one box and two visibility flags per frame, a split) and, for a bad
file, a `DatasetFormatError` or `FrameError` with one line naming the file and the fix.

Bad frames: indexing only checks that every frame file exists (the reader lists each sequence's folder
once). `verify_frames` decodes every frame (select_data's `-P verify_frames=true`), one thread per core
(the JPEG decoder releases the GIL). Cost, measured with `verify_frames(..., workers=1)` over 1000
`synthetic.generate_lasot` frames of 1280x720 (~100 KB each, as LaSOT's): 2.7-2.9 s per 1000 frames on
one core (shared 2-core development machine; a reduced 1/8 `draft` decode would take 1.7 s but skips
the full IDCT the evaluation path may need). So ~2.5 min of one core for a 20-sequence class (~50 k
frames), ~2.8 core-hours for all of LaSOT's 3.5 M frames: divide by the cores. Damage that libjpeg
decodes into wrong-but-valid pixels (a flipped byte inside the entropy-coded data often is: libjpeg
only warns) cannot be found by decoding, and LaSOT ships no checksums.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from seqtrack_mlflow.config import DataConfig


class DatasetFormatError(ValueError):
    """A dataset file or folder a reader cannot use: one line naming the file (and line) and the fix."""


class FrameError(DatasetFormatError):
    """A frame image that is missing or cannot be decoded: one line naming the file and the fix."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}: restore or re-download this sequence")

    def __reduce__(self) -> tuple[type, tuple[Path, str]]:
        """Rebuilt from (path, reason), so it crosses a process pool (evaluation's baselines) intact."""
        return (type(self), (self.path, self.reason))


class DataSourceError(RuntimeError):
    """The data source cannot deliver: one line naming the source or input and the fix."""


# What PIL raises for a damaged or foreign file: UnidentifiedImageError and "image file is truncated" are
# OSErrors; some plugins raise SyntaxError, ValueError or EOFError on bad headers.
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    Image.DecompressionBombError,
)


def frame_error(path: Path | str, exc: BaseException) -> FrameError:
    """The one-line FrameError for a decode failure `exc` of frame `path`."""
    if isinstance(exc, FileNotFoundError):
        return FrameError(path, "frame image is missing")
    text = " ".join(str(exc).replace(repr(str(path)), "").split())
    if isinstance(exc, Image.UnidentifiedImageError) or text.startswith("cannot identify image file"):
        text = "not an image file"
    text = text[:120] or type(exc).__name__
    return FrameError(path, f"cannot decode frame image ({text})")


@dataclass(frozen=True, eq=False)  # eq=False: numpy fields make generated __eq__ ambiguous
class Sequence:
    """One sequence, fully loaded except for its images (read lazily via `frame_path`).

    Frame `i` (0-based) is the file `path / frame_pattern.format(i + first_number)`: a pattern, not a
    list of paths, so a sequence of thousands of frames stays small when it is sent to loader workers."""

    name: str
    class_name: str
    number: int
    path: Path
    split: str
    boxes: np.ndarray  # (N, 4) x, y, w, h per frame
    full_occlusion: np.ndarray  # (N,) bool
    out_of_view: np.ndarray  # (N,) bool
    frame_pattern: str  # the frame file relative to `path`, e.g. "img/{:08d}.jpg"
    first_number: int = 1  # the number frame 0 has in `frame_pattern`

    @property
    def visible(self) -> np.ndarray:
        """Visibility: the target is in the frame, not fully occluded, and has a valid box."""
        return ~self.full_occlusion & ~self.out_of_view & (self.boxes[:, 2] > 0) & (self.boxes[:, 3] > 0)

    @property
    def num_frames(self) -> int:
        return int(self.boxes.shape[0])

    def frame_path(self, index: int) -> Path:
        """0-based frame index -> the image file."""
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame index {index} out of range for {self.name} ({self.num_frames} frames)")
        return self.path / self.frame_pattern.format(index + self.first_number)


def decode_frame(path: Path) -> None:
    """Decode one frame fully (the pixels are discarded); FrameError if that fails."""
    try:
        with Image.open(path) as image:
            image.load()
    except DECODE_ERRORS as exc:
        raise frame_error(path, exc) from None


def verify_frames(sequences: Iterable[Sequence], workers: int | None = None) -> int:
    """Decode every frame of the sequences, `workers` threads (default: one per core); returns the
    number of frames checked. The first bad frame in sequence/frame order raises FrameError."""
    paths = [seq.frame_path(i) for seq in sequences for i in range(seq.num_frames)]
    workers = max(1, workers or os.cpu_count() or 1)
    if workers == 1 or len(paths) < 2:
        for path in paths:
            decode_frame(path)
        return len(paths)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="verify-frames")
    try:
        for _ in pool.map(decode_frame, paths):  # results in order: the first bad frame raises
            pass
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # after a bad frame, decode no more
    return len(paths)


def frame_size(seq: Sequence) -> tuple[int, int]:
    """(width, height) of frame 1; PIL reads only the image header here."""
    path = seq.frame_path(0)
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise DatasetFormatError(
            f"{path}: missing frame image: restore or re-download this sequence"
        ) from None
    except OSError as exc:
        raise DatasetFormatError(f"{path}: unreadable image ({exc}): re-download this sequence") from None


@dataclass(frozen=True)
class RootSource:
    """Where a dataset's root comes from for one value of `source`: a setting (`-P <setting>=...`),
    else an env variable (a cache folder: the dataset is downloaded or generated into it)."""

    source: str
    setting: str
    env: str


@dataclass(frozen=True)
class Found:
    """Where a dataset's root was found on this machine (`path` None: nowhere), and how."""

    path: Path | None
    detail: str


class Dataset(Protocol):
    """A registry entry: where a dataset's data comes from, how to read it, and how it is scored.

    One entry may serve several values of the `source` setting (LaSOT: `local` and `hub`); `prepare`
    turns a source into a root folder that `sequence_dirs` and `read_sequence` read."""

    name: str  # the registry key
    label: str  # how runs, titles and summaries name its data
    format: str  # the on-disk layout its reader reads
    sources: tuple[str, ...]  # the `source` values it serves; the first is its default
    roots: tuple[RootSource, ...]  # where its root comes from
    protocol: str  # the evaluation protocol its test split is scored with, e.g. "LaSOT OPE: AUC, P, P_norm"
    split_rule: str  # how sequences are split into train and test
    caveat: str  # said beside the source in the dataset summary ("" if nothing)

    def auto_source(self, data: DataConfig) -> str:
        """The source `source=auto` means for this dataset, given the settings."""
        ...

    def check(self, data: DataConfig, source: str) -> None:
        """Refuse missing inputs (a root that is not there) before anything runs."""
        ...

    def used_settings(self, data: DataConfig, source: str) -> dict[str, str]:
        """The settings naming the folders read, resolved (e.g. the root from its env variable)."""
        ...

    def find_root(self, data: DataConfig) -> Found:
        """Whether (and where) a root is found on this machine, without downloading anything."""
        ...

    def classes(self, data: DataConfig, source: str) -> list[str]:
        """The classes a selection may draw from."""
        ...

    def prepare(self, data: DataConfig, source: str, classes: list[str], seed: int) -> Path:
        """A root folder holding `classes` (downloaded or generated where the source does that)."""
        ...

    def sequence_dirs(self, root: Path, class_name: str) -> list[Path]:
        """The sequence folders of one class, in order."""
        ...

    def read_sequence(self, seq_dir: Path, check_images: bool = True) -> Sequence:
        """One sequence; `check_images` also checks that every frame file exists."""
        ...


__all__ = [
    "DECODE_ERRORS",
    "DataSourceError",
    "Dataset",
    "DatasetFormatError",
    "Found",
    "FrameError",
    "RootSource",
    "Sequence",
    "decode_frame",
    "frame_error",
    "frame_size",
    "verify_frames",
]
