"""The LaSOT extension (LaSOT_ext): 150 test sequences of 15 new classes in LaSOT's layout, scored with
LaSOT's protocol (`-P benchmark=lasot_ext`), and its registry entry.

Layout: `<root>/<class>/<class>-<k>/` as LaSOT's (`lasot.py` reads each sequence), k = 1..10; the
Hugging Face dataset `l-lt/LaSOT-ext` ships one zip a class. The class list is the official test list
(`lib/test/evaluation/lasotextensionsubsetdataset.py`). A partial download is read as it is and says how
many of the 150 sequences are missing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from seqtrack_mlflow.config import DataConfig

from . import lasot
from .base import DatasetFormatError, DataSourceError, Sequence
from .local import LocalRoot, SplitRead

EXT_CLASSES = (
    "atv", "badminton", "cosplay", "dancingshoe", "footbag", "frisbee", "jianzi", "lantern", "misc",
    "opossum", "paddle", "raccoon", "rhino", "skatingshoe", "wingsuit",
)  # fmt: skip
SEQUENCES_PER_CLASS = 10
_SEQ_NAME = re.compile(r"(?P<cls>[a-z]+)-(?P<num>\d+)")


def read_sequence(seq_dir: Path, check_images: bool = True) -> Sequence:
    """One extension sequence (LaSOT's files), always in the test split."""
    match = _SEQ_NAME.fullmatch(Path(seq_dir).name)
    if match is None or match["cls"] not in EXT_CLASSES:
        raise DatasetFormatError(
            f"{seq_dir}: not a LaSOT extension sequence folder: expected <class>-<k> of "
            f"{', '.join(EXT_CLASSES)}"
        )
    return lasot.read_sequence(seq_dir, check_images, split="test")


def class_sequence_dirs(root: Path, class_name: str) -> list[Path]:
    """`<class>-1 ... <class>-10` present under `<root>/<class>/`, by number."""
    folder = Path(root) / class_name
    if not folder.is_dir():
        return []
    found = [(m, entry.path) for entry in os.scandir(folder) if (m := _SEQ_NAME.fullmatch(entry.name))]
    return [Path(path) for m, path in sorted(found, key=lambda f: int(f[0]["num"])) if m["cls"] == class_name]


def read_split(root: Path, split: str = "test") -> SplitRead:
    """Every extension sequence under root; the 150 are what the split names."""
    if split != "test":
        raise DataSourceError(f"unknown LaSOT extension split {split!r}: it has only test")
    dirs = [path for name in EXT_CLASSES for path in class_sequence_dirs(root, name)]
    if not dirs:
        raise DataSourceError(
            f"no LaSOT extension class folder (atv/, badminton/, ...) under {root}: fix -P lasot_ext_root "
            "(or LASOT_EXT_ROOT), or extract the l-lt/LaSOT-ext class zips there"
        )
    sequences = [read_sequence(path) for path in dirs]
    expected = len(EXT_CLASSES) * SEQUENCES_PER_CLASS
    return SplitRead("lasot_ext", "LaSOT_ext", "test", Path(root), sequences, expected)


class LasotExt(LocalRoot):
    """The LaSOT extension from a local root (`lasot_ext_root` or `$LASOT_EXT_ROOT`), for evaluation."""

    name = "lasot_ext"
    label = "LaSOT_ext"
    format = "LaSOT"
    setting = "lasot_ext_root"
    layout = "<class>/<class>-<k>/ of the 15 extension classes"
    protocol = "LaSOT OPE: AUC, P, P_norm (-P benchmark=lasot_ext)"
    split_rule = "all 150 sequences are test"

    def classes(self, data: DataConfig, source: str) -> list[str]:
        return list(EXT_CLASSES)

    def sequence_dirs(self, root: Path, class_name: str) -> list[Path]:
        return class_sequence_dirs(root, class_name)

    def read_sequence(self, seq_dir: Path, check_images: bool = True) -> Sequence:
        return read_sequence(seq_dir, check_images)

    def read_split(self, root: Path, split: str, data: DataConfig) -> SplitRead:
        return read_split(root, split)


__all__ = ["EXT_CLASSES", "LasotExt", "class_sequence_dirs", "read_sequence", "read_split"]
