"""LaSOT: the reader (sequences, boxes, visibility flags, the protocol II split) and its registry entry.

Layout (the LaSOT release): `<root>/<class>/<class>-<k>/` holding `img/00000001.jpg ...`,
`groundtruth.txt` (one `x,y,w,h` line per frame), `full_occlusion.txt` and `out_of_view.txt` (one line of
0/1 flags) and `nlp.txt`. The frame count comes from the ground-truth lines, never from listing `img/`
(monkey-17 has more images than boxes), and absence comes from the flags, never from the box (absent
frames often keep a stale box).

Bad files raise `DatasetFormatError` (alias `LasotFormatError`) with one line naming the file and the
line, so a user can fix or re-download that one sequence instead of debugging a numpy traceback. The
annotation files are read by `annotations.py`, bounded by the frame images the folder holds. Frame
images are only checked to exist here; decoding them is `base.verify_frames`.

The entry (`Lasot`) serves two sources: `local`, a LaSOT root given by `lasot_root` or `$LASOT_ROOT`,
and `hub`, the selected classes downloaded into the cache (`hub.py`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from collections.abc import Sequence as Seq
from pathlib import Path

from seqtrack_mlflow.config import DataConfig, env_name

from .annotations import parse_flags, parse_groundtruth
from .base import DatasetFormatError, DataSourceError, Found, RootSource, Sequence
from .cache import CACHE_ENV, CACHE_SETTING, COMPLETE_MARKER, cache_dir_of

LASOT_CLASSES: tuple[str, ...] = (
    "airplane", "basketball", "bear", "bicycle", "bird", "boat", "book", "bottle", "bus", "car", "cat",
    "cattle", "chameleon", "coin", "crab", "crocodile", "cup", "deer", "dog", "drone", "electricfan",
    "elephant", "flag", "fox", "frog", "gametarget", "gecko", "giraffe", "goldfish", "gorilla", "guitar",
    "hand", "hat", "helmet", "hippo", "horse", "kangaroo", "kite", "leopard", "licenseplate", "lion",
    "lizard", "microphone", "monkey", "motorcycle", "mouse", "person", "pig", "pool", "rabbit", "racing",
    "robot", "rubicCube", "sepia", "shark", "sheep", "skateboard", "spider", "squirrel", "surfboard",
    "swing", "tank", "tiger", "train", "truck", "turtle", "umbrella", "volleyball", "yoyo", "zebra",
)  # fmt: skip

# Protocol II test sequence numbers (testing_set.txt of the LaSOT release); the other 16 of each
# class are the training split.
TEST_SEQUENCE_NUMBERS: dict[str, tuple[int, ...]] = {
    "airplane": (1, 9, 13, 15), "basketball": (1, 6, 7, 11), "bear": (2, 4, 6, 17),
    "bicycle": (2, 7, 9, 18), "bird": (2, 3, 15, 17), "boat": (3, 4, 12, 17), "book": (3, 10, 11, 19),
    "bottle": (1, 12, 14, 18), "bus": (2, 5, 17, 19), "car": (2, 6, 9, 17), "cat": (1, 3, 18, 20),
    "cattle": (2, 7, 12, 13), "chameleon": (3, 6, 11, 20), "coin": (3, 6, 7, 18), "crab": (3, 6, 12, 18),
    "crocodile": (3, 4, 10, 14), "cup": (1, 4, 7, 17), "deer": (4, 8, 10, 14), "dog": (1, 7, 15, 19),
    "drone": (2, 7, 13, 15), "electricfan": (1, 10, 18, 20), "elephant": (1, 12, 16, 18),
    "flag": (2, 3, 5, 9), "fox": (2, 3, 5, 20), "frog": (3, 4, 9, 20), "gametarget": (1, 2, 7, 13),
    "gecko": (1, 5, 16, 19), "giraffe": (2, 10, 13, 15), "goldfish": (3, 7, 8, 10),
    "gorilla": (4, 6, 9, 13), "guitar": (3, 8, 10, 16), "hand": (2, 3, 9, 16), "hat": (1, 2, 5, 18),
    "helmet": (5, 11, 13, 19), "hippo": (1, 7, 9, 20), "horse": (1, 4, 12, 15),
    "kangaroo": (2, 5, 11, 14), "kite": (4, 6, 10, 15), "leopard": (1, 7, 16, 20),
    "licenseplate": (6, 12, 13, 15), "lion": (1, 5, 12, 20), "lizard": (1, 3, 6, 13),
    "microphone": (2, 6, 14, 16), "monkey": (3, 4, 9, 17), "motorcycle": (1, 3, 9, 18),
    "mouse": (1, 8, 9, 17), "person": (1, 5, 10, 12), "pig": (2, 10, 13, 18), "pool": (3, 7, 12, 15),
    "rabbit": (10, 13, 17, 19), "racing": (10, 15, 16, 20), "robot": (1, 5, 8, 19),
    "rubicCube": (1, 6, 14, 19), "sepia": (6, 8, 13, 16), "shark": (2, 3, 5, 6), "sheep": (3, 5, 7, 9),
    "skateboard": (3, 8, 16, 19), "spider": (14, 16, 18, 20), "squirrel": (8, 11, 13, 19),
    "surfboard": (4, 5, 8, 12), "swing": (10, 14, 17, 20), "tank": (6, 9, 14, 16), "tiger": (4, 6, 12, 18),
    "train": (1, 7, 11, 20), "truck": (3, 6, 7, 16), "turtle": (5, 8, 9, 16), "umbrella": (2, 9, 17, 19),
    "volleyball": (1, 13, 18, 19), "yoyo": (7, 15, 17, 19), "zebra": (10, 14, 16, 17),
}  # fmt: skip

SEQUENCES_PER_CLASS = 20
FRAME_NAME = "{:08d}.jpg"
FRAME_PATTERN = "img/" + FRAME_NAME  # a frame file relative to its sequence folder
CACHE_FOLDER = "lasot"  # hub downloads are extracted into <cache>/lasot/<class>/
ROOT_ENV = env_name(DataConfig, "lasot_root")  # declared with the setting

_SEQ_NAME = re.compile(r"^(?P<cls>[A-Za-z]+)-(?P<num>\d+)$")


# The name LaSOT code and tests use for the generic reader error (the same class, so an error raised
# by any reader or by the frame checks is one).
LasotFormatError = DatasetFormatError


def split_of(class_name: str, number: int) -> str:
    """Protocol II split of a sequence ("train" or "test")."""
    if class_name not in TEST_SEQUENCE_NUMBERS:
        raise LasotFormatError(
            f"unknown LaSOT class {class_name!r}: protocol II defines splits only for the 70 LaSOT classes"
        )
    return "test" if number in TEST_SEQUENCE_NUMBERS[class_name] else "train"


def parse_sequence_name(name: str) -> tuple[str, int]:
    """`"airplane-1"` -> `("airplane", 1)`."""
    match = _SEQ_NAME.match(name)
    if match is None:
        raise LasotFormatError(f"{name!r} is not a LaSOT sequence folder name: expected <class>-<number>")
    return match["cls"], int(match["num"])


def frame_listing(seq_dir: Path) -> set[str]:
    """The names in the sequence's image folder (one directory listing, not one stat per frame)."""
    img_dir = seq_dir / "img"
    try:
        return set(os.listdir(img_dir))
    except (FileNotFoundError, NotADirectoryError):
        raise LasotFormatError(
            f"{img_dir}: image folder is missing: restore or re-download this sequence"
        ) from None


def check_frames(seq_dir: Path, num_frames: int, groundtruth: Path, present: set[str] | None = None) -> None:
    """Every frame named by the ground truth exists (`present`: the image folder's listing, if made)."""
    img_dir = seq_dir / "img"
    present = frame_listing(seq_dir) if present is None else present
    for index in range(num_frames):
        name = FRAME_NAME.format(index + 1)
        if name not in present:
            raise LasotFormatError(
                f"{img_dir / name}: missing frame image for {groundtruth.name} line {index + 1} "
                f"(of {num_frames}): restore or re-download this sequence"
            )


def read_sequence(seq_dir: Path, check_images: bool = True, split: str | None = None) -> Sequence:
    """Load one sequence folder. The image folder is listed either way: its size bounds what the
    annotation files may hold (`annotations`); `check_images=False` (index re-reads) skips only the
    check that every frame the ground truth names is there. `split`: the split of a LaSOT-format tree
    of other classes (the extension's are all test); unset, protocol II's."""
    seq_dir = Path(seq_dir)
    class_name, number = parse_sequence_name(seq_dir.name)
    gt_path = seq_dir / "groundtruth.txt"
    present = frame_listing(seq_dir)
    boxes = parse_groundtruth(gt_path, frames=len(present), images=str(seq_dir / "img"))
    n = boxes.shape[0]
    occlusion = parse_flags(seq_dir / "full_occlusion.txt", n, gt_path)
    out_of_view = parse_flags(seq_dir / "out_of_view.txt", n, gt_path)
    if check_images:
        check_frames(seq_dir, n, gt_path, present)
    for array in (boxes, occlusion, out_of_view):
        array.setflags(write=False)
    return Sequence(
        name=seq_dir.name,
        class_name=class_name,
        number=number,
        path=seq_dir.resolve(),
        split=split or split_of(class_name, number),
        boxes=boxes,
        full_occlusion=occlusion,
        out_of_view=out_of_view,
        frame_pattern=FRAME_PATTERN,
    )


def available_classes(root: Path) -> list[str]:
    """LaSOT class folders present under root (other entries, e.g. temp folders or split files, ignored)."""
    root = Path(root)
    if not root.is_dir():
        raise LasotFormatError(f"{root}: LaSOT root folder does not exist: give an existing folder")
    known = set(LASOT_CLASSES)
    return sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and entry.name in known)


def class_sequence_dirs(root: Path, class_name: str) -> list[Path]:
    """Sequence folders `<class>-<k>` of one class, sorted by k (numerically: 2 before 10)."""
    class_dir = Path(root) / class_name
    if not class_dir.is_dir():
        raise LasotFormatError(
            f"{class_dir}: class folder is missing: download or generate class {class_name!r}"
        )
    found: list[tuple[int, Path]] = []
    for entry in os.scandir(class_dir):
        match = _SEQ_NAME.match(entry.name)
        if match and match["cls"] == class_name and entry.is_dir():
            found.append((int(match["num"]), Path(entry.path)))
    return [path for _, path in sorted(found)]


def _classes(names: list[str]) -> str:
    return f"{len(names)} class{'' if len(names) == 1 else 'es'}"


class LasotFormat:
    """Reading a LaSOT-format tree: what every entry whose root has the LaSOT layout shares."""

    format = "LaSOT"
    split_rule = "LaSOT protocol II"
    protocol = "LaSOT OPE: AUC, P, P_norm"  # one-pass evaluation, the LaSOT toolkit's metrics

    def sequence_dirs(self, root: Path, class_name: str) -> list[Path]:
        return class_sequence_dirs(root, class_name)

    def read_sequence(self, seq_dir: Path, check_images: bool = True) -> Sequence:
        return read_sequence(seq_dir, check_images)


class Lasot(LasotFormat):
    """LaSOT itself: a local root (`source=local`), or the selected classes from the hub (`source=hub`).

    `fetch(classes, cache_dir) -> root` is the hub download (`hub.fetch_lasot_classes`); the registry
    hands it in because hub.py reads LaSOT's layout rules from this module."""

    name = "lasot"
    label = "LaSOT"
    sources = ("local", "hub")
    roots = (
        RootSource("local", "lasot_root", ROOT_ENV),
        RootSource("hub", CACHE_SETTING, CACHE_ENV),
    )
    caveat = ""

    def __init__(self, fetch: Callable[[Seq[str], Path], Path]) -> None:
        self._fetch = fetch

    @staticmethod
    def given_root(data: DataConfig) -> str:
        """The LaSOT root as given: `lasot_root`, else `$LASOT_ROOT` ("" if neither)."""
        return data.lasot_root or os.environ.get(ROOT_ENV, "")

    def auto_source(self, data: DataConfig) -> str:
        """`local` when a LaSOT root is given, else `hub`."""
        return "local" if self.given_root(data) else "hub"

    def local_root(self, data: DataConfig) -> Path:
        """The user's LaSOT root (`lasot_root`, else `$LASOT_ROOT`), checked to exist."""
        given = self.given_root(data)
        if not given:
            raise DataSourceError(
                "source=local needs a LaSOT root: pass -P lasot_root=/path/to/LaSOT or set LASOT_ROOT"
            )
        root = Path(given).expanduser()
        if not root.is_dir():
            raise DataSourceError(f"LaSOT root {root} does not exist: fix -P lasot_root (or LASOT_ROOT)")
        return root.resolve()

    def check(self, data: DataConfig, source: str) -> None:
        if source == "local":
            self.local_root(data)

    def used_settings(self, data: DataConfig, source: str) -> dict[str, str]:
        return {"lasot_root": str(self.local_root(data))} if source == "local" else {}

    def find_root(self, data: DataConfig) -> Found:
        """The local root if one is given, else the hub cache if it holds a complete class."""
        given = self.given_root(data)
        if given:
            how = "lasot_root" if data.lasot_root else f"${ROOT_ENV}"
            root = Path(given).expanduser()
            if not root.is_dir():
                return Found(None, f"no: {root} ({how}) does not exist")
            classes = available_classes(root)
            if not classes:
                return Found(None, f"no: {root} ({how}) holds no LaSOT class folder")
            return Found(root.resolve(), f"{root.resolve()} ({how}: {_classes(classes)})")
        cached = cache_dir_of(data) / CACHE_FOLDER
        done = [name for name in LASOT_CLASSES if (cached / name / COMPLETE_MARKER).is_file()]
        if done:
            return Found(cached, f"{cached} (hub: {_classes(done)})")
        return Found(None, "no")

    def classes(self, data: DataConfig, source: str) -> list[str]:
        """What a local root holds, else all 70 LaSOT classes."""
        if source != "local":
            return list(LASOT_CLASSES)
        root = self.local_root(data)
        classes = available_classes(root)
        if not classes:
            raise DataSourceError(
                f"no LaSOT class folders (airplane/, bear/, ...) under {root}: "
                "fix -P lasot_root (or LASOT_ROOT)"
            )
        return classes

    def prepare(self, data: DataConfig, source: str, classes: list[str], seed: int) -> Path:
        if source == "local":
            root = self.local_root(data)
            missing = [name for name in classes if not (root / name).is_dir()]
            if missing:
                raise DataSourceError(
                    f"class folder(s) {', '.join(missing)} missing under {root}: "
                    "fix -P lasot_root or -P classes"
                )
            return root
        return self._fetch(classes, cache_dir_of(data))


__all__ = [
    "CACHE_FOLDER",
    "FRAME_NAME",
    "LASOT_CLASSES",
    "Lasot",
    "LasotFormat",
    "LasotFormatError",
    "SEQUENCES_PER_CLASS",
    "TEST_SEQUENCE_NUMBERS",
    "available_classes",
    "class_sequence_dirs",
    "parse_sequence_name",
    "read_sequence",
    "split_of",
]
