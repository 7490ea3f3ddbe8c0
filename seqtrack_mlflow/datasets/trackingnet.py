"""TrackingNet: the reader (chunks, per-video annotations, frames numbered from 0) and its registry entry.

Layout (the TrackingNet devkit's download): `<root>/TRAIN_0 ... TRAIN_11/` and `<root>/TEST/`, each
holding `anno/<video>.txt` (x,y,w,h a line) and `frames/<video>/0.jpg, 1.jpg, ...` (numbered from 0, not
zero-padded). Video names are YouTube ids with a suffix (`Nf1aqv5Fg5o_0`) and may hold `-` and `_`.
`TEST/anno` holds only the first box: the ground truth is hidden (the TrackingNet server scores results).

As the official reader (`lib/train/dataset/tracking_net.py`): a chunk's videos are its `anno/*.txt`
files, `trackingnet_chunks` selects chunks (its `set_ids`), and a frame is visible when w > 0 and h > 0
(TrackingNet has no occlusion labels). Few users hold all 12 chunks (each is ~100 GB): an absent chunk
is named in the read's line, and a video whose frames are not extracted (the devkit unzips them per
video) is counted missing; a damaged one (a malformed line, a missing frame) is refused in one line
naming the file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence as Seq
from pathlib import Path

import numpy as np

from seqtrack_mlflow.config.data import TRACKINGNET_CHUNKS, DataConfig, parse_chunks

from .annotations import parse_groundtruth
from .base import DatasetFormatError, DataSourceError, Sequence
from .local import LocalRoot, SplitRead, listing

TEST_CHUNK = "TEST"
FRAME_NAME = "{}.jpg"
_FRAME = re.compile(r"(0|[1-9]\d*)\.jpg")
_CHUNK = re.compile(r"TRAIN_(\d{1,2})")


def chunk_name(chunk: int) -> str:
    return f"TRAIN_{chunk}"


def chunk_number(name: str) -> int:
    """`TRAIN_3` -> 3; `TEST` -> -1."""
    if name == TEST_CHUNK:
        return -1
    match = _CHUNK.fullmatch(name)
    if match is None:
        raise DatasetFormatError(
            f"{name!r} is not a TrackingNet chunk folder: expected TRAIN_0..TRAIN_11 or TEST"
        )
    return int(match[1])


def read_sequence(seq_dir: Path, check_images: bool = True) -> Sequence:
    """One video, from its frame folder `<root>/<chunk>/frames/<video>` and `<chunk>/anno/<video>.txt`
    (TEST: the first box, then NaN for the hidden ones)."""
    seq_dir = Path(seq_dir)
    chunk_dir = seq_dir.parent.parent
    number = chunk_number(chunk_dir.name)
    present = listing(seq_dir, "frame folder", "extract this video's frames again")
    frames = sum(1 for name in present if _FRAME.fullmatch(name))
    anno = chunk_dir / "anno" / f"{seq_dir.name}.txt"
    boxes = parse_groundtruth(anno, frames=frames, images=str(seq_dir))
    if number < 0:  # TEST: only the first box is given; the frame count is the images'
        if not frames:
            raise DatasetFormatError(f"{seq_dir}: no frame images: extract this video's frames again")
        boxes = np.concatenate([boxes[:1], np.full((frames - 1, 4), np.nan)])
    if check_images:
        for index in range(len(boxes)):
            if FRAME_NAME.format(index) not in present:
                raise DatasetFormatError(
                    f"{seq_dir / FRAME_NAME.format(index)}: missing frame image for {anno.name} line "
                    f"{index + 1} (of {len(boxes)}): extract this video's frames again"
                )
    none = np.zeros(len(boxes), dtype=bool)
    none.setflags(write=False)
    boxes.setflags(write=False)
    return Sequence(
        name=seq_dir.name,
        class_name=chunk_dir.name,
        number=number,
        path=seq_dir.resolve(),
        split="test" if number < 0 else "train",
        boxes=boxes,
        full_occlusion=none,
        out_of_view=none,
        frame_pattern=FRAME_NAME,
        first_number=0,
    )


def chunk_videos(chunk_dir: Path) -> tuple[list[Path], int]:
    """A chunk's video frame folders that are extracted, and how many videos its `anno/` lists."""
    anno = listing(chunk_dir / "anno", "annotation folder", f"extract {chunk_dir.name}'s anno.zip there")
    videos = sorted(name[: -len(".txt")] for name in anno if name.endswith(".txt"))
    frames_dir = chunk_dir / "frames"
    extracted = (
        listing(frames_dir, "frames folder", "extract the chunk's frames") if frames_dir.is_dir() else set()
    )
    return [frames_dir / video for video in videos if video in extracted], len(videos)


def read_chunks(root: Path, chunks: Seq[str], split: str) -> SplitRead:
    """Every extracted video of the chunk folders `chunks` (absent ones named, not counted)."""
    dirs: list[Path] = []
    expected = 0
    absent = [name for name in chunks if not (Path(root) / name).is_dir()]
    for name in chunks:
        if name not in absent:
            found, listed = chunk_videos(Path(root) / name)
            dirs += found
            expected += listed
    if not dirs:
        raise DataSourceError(
            f"{root} holds no extracted video of TrackingNet {', '.join(chunks)}: fix -P trackingnet_root "
            "(or TRACKINGNET_ROOT) or -P trackingnet_chunks"
        )
    notes = [f"chunks {', '.join(chunks)}"] if split == "train" and len(chunks) < TRACKINGNET_CHUNKS else []
    if absent:
        notes.append(f"chunk{'s' if len(absent) > 1 else ''} {', '.join(absent)} absent (not counted)")
    sequences = [read_sequence(path) for path in dirs]
    return SplitRead(
        "trackingnet", "TrackingNet", split, Path(root), sequences, expected, note="; ".join(notes)
    )


def read_split(root: Path, split: str, chunks: str = "all") -> SplitRead:
    """`train` (the chunks of `trackingnet_chunks`) or `test` (TEST/)."""
    if split == "test":
        return read_chunks(root, [TEST_CHUNK], "test")
    if split != "train":
        raise DataSourceError(f"unknown TrackingNet split {split!r}: use train or test")
    return read_chunks(root, [chunk_name(k) for k in parse_chunks(chunks)], "train")


class TrackingNet(LocalRoot):
    """TrackingNet from a local root (`trackingnet_root` or `$TRACKINGNET_ROOT`); its "classes" are its
    chunk folders."""

    name = "trackingnet"
    label = "TrackingNet"
    format = "TrackingNet"
    setting = "trackingnet_root"
    layout = "TRAIN_0 ... TRAIN_11/, TEST/, each with anno/ and frames/"
    protocol = "TrackingNet: AUC, P, P_norm (test scored by the TrackingNet server)"
    split_rule = "chunks TRAIN_0..TRAIN_11 (trackingnet_chunks) for training; TEST"

    def classes(self, data: DataConfig, source: str) -> list[str]:
        return [*(chunk_name(k) for k in parse_chunks(data.trackingnet_chunks)), TEST_CHUNK]

    def sequence_dirs(self, root: Path, class_name: str) -> list[Path]:
        return chunk_videos(Path(root) / class_name)[0]

    def read_sequence(self, seq_dir: Path, check_images: bool = True) -> Sequence:
        return read_sequence(seq_dir, check_images)

    def read_split(self, root: Path, split: str, data: DataConfig) -> SplitRead:
        return read_split(root, split, data.trackingnet_chunks)


__all__ = [
    "FRAME_NAME",
    "TEST_CHUNK",
    "TrackingNet",
    "chunk_name",
    "chunk_videos",
    "read_chunks",
    "read_sequence",
    "read_split",
]
