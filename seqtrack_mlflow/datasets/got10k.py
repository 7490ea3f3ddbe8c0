"""GOT-10k: the reader (sequences, boxes, absence and cover labels, meta info), the official training
splits, and its registry entry.

Layout (the GOT-10k release): `<root>/train/GOT-10k_Train_000001 ... _009335/`, `<root>/val/GOT-10k_Val_
000001 ... _000180/`, `<root>/test/GOT-10k_Test_000001 ... _000180/`, each split folder with `list.txt`
(one sequence a line). A sequence folder holds `00000001.jpg ...`, `groundtruth.txt` (x,y,w,h a line)
and, in train and val, `absence.label` (0/1 a line), `cover.label` (0..8: the visible fraction in
eighths), `cut_by_image.label` and `meta_info.ini` (`object_class: ...`, `resolution: (w, h)`, ...).
Test folders hold only the first box: the ground truth is hidden (the GOT-10k server scores results).

Visibility follows the official reader (`lib/train/dataset/got10k.py`): `~absence & (cover > 0)` and a
box with w, h > 0. Here absence is `full_occlusion` and `cover == 0` is `out_of_view`, so
`Sequence.visible` is exactly that.

Training splits are the official SeqTrack split files (shipped in `splits/`, their source in
`splits/README.md`): each line a 0-based index into the sorted train list, index i being
`GOT-10k_Train_{i+1:06d}`. The official reader indexes `train/list.txt`; mapping indices to names
instead lets a partial download (the train set ships in 19 zip parts) train on the sequences that are
there, and the read says how many of the split's are missing. A damaged sequence (a malformed line, a
missing frame, labels that do not match the boxes) is refused in one line naming the file.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from seqtrack_mlflow.config.data import GOT10K_TRAIN_SPLITS, DataConfig

from .annotations import parse_groundtruth, parse_levels, read_bounded, read_name_list
from .base import DatasetFormatError, DataSourceError, Sequence
from .local import LocalRoot, SplitRead, listing

TRAIN_SEQUENCES = 9335  # GOT-10k_Train_000001 ... _009335
FOLDER_SPLITS = ("val", "test")  # read from their folder's list.txt
SPLITS = (*GOT10K_TRAIN_SPLITS, *FOLDER_SPLITS)
SPLIT_FILES = {
    "vottrain": "got10k_vot_train_split.txt",
    "train_full": "got10k_train_full_split.txt",
    "train": "got10k_train_split.txt",
    "votval": "got10k_vot_val_split.txt",
    "ltrval": "got10k_val_split.txt",
}
FRAME_NAME = "{:08d}.jpg"
MAX_META_BYTES = 64 * 1024  # a meta_info.ini is about 300 bytes
MAX_LIST_LINES = 10_000  # list.txt: 9,335 train names, 180 val or test names
_SEQ_NAME = re.compile(r"GOT-10k_(?P<folder>Train|Val|Test)_(?P<num>\d{6})")
_FRAME = re.compile(r"\d{8}\.jpg")
_RESOLUTION = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)")


def sequence_name(index: int) -> str:
    """0-based index of the sorted train list -> its folder name (official split files' convention)."""
    return f"GOT-10k_Train_{index + 1:06d}"


@cache
def split_names(split: str) -> tuple[str, ...]:
    """The train folders an official split file names, in the file's order."""
    if split not in SPLIT_FILES:
        raise DataSourceError(f"unknown GOT-10k training split {split!r}: use {', '.join(SPLIT_FILES)}")
    text = (resources.files(__package__) / "splits" / SPLIT_FILES[split]).read_text()
    indices = np.fromstring(text, dtype=np.int64, sep="\n")
    if indices.size == 0 or indices.min() < 0 or indices.max() >= TRAIN_SEQUENCES:
        raise DatasetFormatError(f"splits/{SPLIT_FILES[split]}: not an official GOT-10k split file")
    return tuple(sequence_name(int(i)) for i in indices)


def parse_sequence_name(name: str) -> tuple[str, int]:
    """`"GOT-10k_Val_000007"` -> ("val", 7)."""
    match = _SEQ_NAME.fullmatch(name)
    if match is None:
        raise DatasetFormatError(
            f"{name!r} is not a GOT-10k sequence folder name: expected GOT-10k_<Train|Val|Test>_NNNNNN"
        )
    return match["folder"].lower(), int(match["num"])


def read_meta(seq_dir: Path) -> dict[str, str]:
    """`meta_info.ini` as `key: value` pairs (the toolkit's reading); {} where there is none (test)."""
    path = seq_dir / "meta_info.ini"
    if not path.is_file():
        return {}
    text = read_bounded(path, MAX_META_BYTES, "a meta_info.ini")
    pairs = (line.split(": ", 1) for line in text.splitlines() if ": " in line)
    return {key.strip(): value.strip() for key, value in pairs}


def resolution(meta: dict[str, str]) -> tuple[int, int] | None:
    """`resolution: (1920, 1080)` -> (1920, 1080), the bound the toolkit clips boxes to."""
    match = _RESOLUTION.fullmatch(meta.get("resolution", ""))
    return (int(match[1]), int(match[2])) if match else None


def _check_frames(seq_dir: Path, count: int, present: set[str], groundtruth: Path) -> None:
    for index in range(count):
        name = FRAME_NAME.format(index + 1)
        if name not in present:
            raise DatasetFormatError(
                f"{seq_dir / name}: missing frame image for {groundtruth.name} line {index + 1} "
                f"(of {count}): restore or re-download this sequence"
            )


def read_sequence(seq_dir: Path, check_images: bool = True) -> Sequence:
    """One sequence folder of train/, val/ or test/ (test: the first box, then NaN for the hidden ones)."""
    seq_dir = Path(seq_dir)
    folder, number = parse_sequence_name(seq_dir.name)
    present = listing(seq_dir, "sequence folder", "restore or re-download this sequence")
    frames = sorted(name for name in present if _FRAME.fullmatch(name))
    gt_path = seq_dir / "groundtruth.txt"
    boxes = parse_groundtruth(gt_path, frames=len(frames), images=str(seq_dir))
    if folder == "test":  # only the first box is given; the frame count is the images'
        if not frames:
            raise DatasetFormatError(f"{seq_dir}: no frame images: restore or re-download this sequence")
        hidden = np.full((len(frames) - 1, 4), np.nan)
        boxes = np.concatenate([boxes[:1], hidden])
        absence = np.zeros(len(frames), dtype=bool)
        cover = np.ones(len(frames), dtype=np.int8)
    else:
        absence = parse_levels(seq_dir / "absence.label", len(boxes), gt_path, 1) == 1
        cover = parse_levels(seq_dir / "cover.label", len(boxes), gt_path, 8)
    if check_images:
        _check_frames(seq_dir, len(boxes), present, gt_path)
    meta = read_meta(seq_dir)
    out_of_view = cover == 0
    for array in (boxes, absence, out_of_view):
        array.setflags(write=False)
    return Sequence(
        name=seq_dir.name,
        class_name=meta.get("object_class", "") or "unknown",
        number=number,
        path=seq_dir.resolve(),
        split=folder,
        boxes=boxes,
        full_occlusion=absence,
        out_of_view=out_of_view,
        frame_pattern=FRAME_NAME,
    )


def split_folder(split: str) -> str:
    """Where a split's sequences lie: the training splits in train/, val and test in their own."""
    if split in SPLIT_FILES:
        return "train"
    if split in FOLDER_SPLITS:
        return split
    raise DataSourceError(f"unknown GOT-10k split {split!r}: use {', '.join(SPLITS)}")


def split_sequence_names(root: Path, split: str) -> list[str]:
    """The sequences a split names: an official split file, or val/test's `list.txt`."""
    folder = split_folder(split)
    if folder == "train":
        return list(split_names(split))
    path = Path(root) / folder / "list.txt"
    if not path.is_file():
        raise DataSourceError(
            f"{path}: the {folder} list is missing: extract GOT-10k's {folder}_data.zip there"
        )
    return read_name_list(path, MAX_LIST_LINES, _SEQ_NAME, f"GOT-10k {folder} sequence names")


def sequence_dirs(root: Path, split: str) -> tuple[list[Path], int]:
    """The split's sequence folders present under root, in the split's order, and how many it names."""
    names = split_sequence_names(root, split)
    folder = Path(root) / split_folder(split)
    present = listing(folder, f"GOT-10k {folder.name} folder", "fix -P got10k_root (or GOT10K_ROOT)")
    return [folder / name for name in names if name in present], len(names)


def read_split(root: Path, split: str) -> SplitRead:
    """Every sequence of `split` that is on disk; none at all is one line naming the folder."""
    dirs, expected = sequence_dirs(root, split)
    if not dirs:
        raise DataSourceError(
            f"{Path(root) / split_folder(split)} holds none of the {expected:,} sequences of GOT-10k "
            f"{split}: fix -P got10k_root (or GOT10K_ROOT), or extract the GOT-10k zips there"
        )
    sequences = [read_sequence(path) for path in dirs]
    return SplitRead("got10k", "GOT-10k", split, Path(root), sequences, expected)


class Got10k(LocalRoot):
    """GOT-10k from a local root (`got10k_root` or `$GOT10K_ROOT`); its "classes" are its splits."""

    name = "got10k"
    label = "GOT-10k"
    format = "GOT-10k"
    setting = "got10k_root"
    layout = "train/, val/, test/ with list.txt"
    protocol = "GOT-10k: AO, SR0.5, SR0.75 (val; test scored by the GOT-10k server)"
    split_rule = "official split files (vottrain, train_full, ...); val/ and test/ folders"

    def classes(self, data: DataConfig, source: str) -> list[str]:
        return list(SPLITS)

    def sequence_dirs(self, root: Path, class_name: str) -> list[Path]:
        return sequence_dirs(root, class_name)[0]

    def read_sequence(self, seq_dir: Path, check_images: bool = True) -> Sequence:
        return read_sequence(seq_dir, check_images)

    def read_split(self, root: Path, split: str, data: DataConfig) -> SplitRead:
        return read_split(root, split)


__all__ = [
    "FRAME_NAME",
    "SPLITS",
    "SPLIT_FILES",
    "Got10k",
    "parse_sequence_name",
    "read_meta",
    "read_sequence",
    "read_split",
    "resolution",
    "sequence_dirs",
    "sequence_name",
    "split_names",
]
