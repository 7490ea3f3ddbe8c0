"""COCO 2017: the reader (each object of `instances_train2017.json` a one-frame sequence) and its
registry entry.

Layout (the COCO release): `<root>/train2017/*.jpg` and `<root>/annotations/instances_train2017.json`
(`images` with id, file_name, width, height; `annotations` with id, image_id, category_id, bbox
[x, y, w, h], iscrowd; `categories` with id, name). The official reader's own layout,
`<root>/images/train2017/`, is read too.

As the official reader (`lib/train/dataset/coco_seq.py`): every annotation with `iscrowd == 0` is one
"sequence" of one frame, visible when w > 50 and h > 50 (its guard against tiny boxes; here the
`out_of_view` flag of a smaller one), and the sampler repeats the image for the templates and the
search frame. The file is read with the standard json module (pycocotools reads it the same way): the
real file is 448 MB and takes a few GB of memory while it is parsed; a file over `MAX_JSON_BYTES` is
refused from its size. Every entry is checked (ids, a plain file name, four finite box values): a bad
one is one line naming the file and the entry. Objects whose image is not on disk (an interrupted
extraction of train2017.zip) are counted missing and left out.

860,001 objects do not become 860,001 `Sequence` records: `CocoObjects` holds them in numpy arrays and
builds a `Sequence` when one is drawn.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from seqtrack_mlflow.config.data import DataConfig

from .annotations import read_bounded
from .base import DatasetFormatError, DataSourceError, Sequence
from .local import LocalRoot, SplitRead, listing

SPLIT = "train2017"
ANNOTATIONS = "annotations/instances_train2017.json"
MAX_JSON_BYTES = 2**30  # the real file: 448 MB
MIN_VISIBLE_SIDE = 50  # official coco_seq.py: valid = (w > 50) & (h > 50)
_FILE_NAME = re.compile(r"[\w.-]{1,255}")  # a plain file name: no folder, no ..
_REFETCH = "restore it from the COCO 2017 download (annotations_trainval2017.zip)"


def images_dir(root: Path) -> Path:
    """`<root>/train2017`, else the official reader's `<root>/images/train2017`."""
    for candidate in (Path(root) / SPLIT, Path(root) / "images" / SPLIT):
        if candidate.is_dir():
            return candidate
    raise DataSourceError(
        f"{Path(root) / SPLIT}: the COCO image folder is missing: extract train2017.zip under "
        "-P coco_root (or COCO_ROOT)"
    )


@dataclass(frozen=True, eq=False)
class CocoObjects:
    """The non-crowd objects of the train split, one `Sequence` of one frame each, built on demand."""

    folder: Path  # the image folder
    files: tuple[str, ...]  # image file names
    image: np.ndarray  # (M,) index into `files`
    sizes: np.ndarray  # (len(files), 2) width, height
    boxes: np.ndarray  # (M, 4) x, y, w, h
    ids: np.ndarray  # (M,) annotation ids
    category: np.ndarray  # (M,) index into `category_names`
    category_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.ids.size)

    @property
    def visible(self) -> np.ndarray:
        """(M,) the official rule: w > 50 and h > 50."""
        return (self.boxes[:, 2] > MIN_VISIBLE_SIDE) & (self.boxes[:, 3] > MIN_VISIBLE_SIDE)

    def __getitem__(self, index: int) -> Sequence:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"object {index} out of range ({len(self)} COCO objects)")
        box = self.boxes[index : index + 1].copy()
        small = ~self.visible[index : index + 1]
        none = np.zeros(1, dtype=bool)
        for array in (box, small, none):
            array.setflags(write=False)
        name = self.files[int(self.image[index])]
        return Sequence(
            name=str(int(self.ids[index])),
            class_name=self.category_names[int(self.category[index])],
            number=int(self.ids[index]),
            path=self.folder,
            split="train",
            boxes=box,
            full_occlusion=none,
            out_of_view=small,
            frame_pattern=name.replace("{", "{{").replace("}", "}}"),  # a literal: frame 0 is the image
            first_number=0,
        )

    def subset(self, keep: np.ndarray) -> CocoObjects:
        """The objects where `keep` is True."""
        return CocoObjects(
            self.folder, self.files, self.image[keep], self.sizes, self.boxes[keep], self.ids[keep],
            self.category[keep], self.category_names,
        )  # fmt: skip

    def index_columns(self) -> dict[str, list[Any]]:
        """The index's columns (selection.INDEX_COLUMNS) without opening an image: sizes from the file."""
        sizes = self.sizes[self.image]
        return {
            "class": [self.category_names[int(c)] for c in self.category],
            "sequence": [str(int(i)) for i in self.ids],
            "number": self.ids.astype(np.int64).tolist(),
            "split": ["train"] * len(self),
            "frames": [1] * len(self),
            "visible_frames": self.visible.astype(np.int64).tolist(),
            "width": sizes[:, 0].tolist(),
            "height": sizes[:, 1].tolist(),
            "path": [str(self.folder / self.files[int(i)]) for i in self.image],
        }


def _bad(path: Path, what: str) -> DatasetFormatError:
    return DatasetFormatError(f"{path}: {what}: {_REFETCH}")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _images(path: Path, images: Any) -> tuple[dict[int, int], tuple[str, ...], np.ndarray]:
    if not isinstance(images, list):
        raise _bad(path, "no 'images' list")
    by_id: dict[int, int] = {}
    files, sizes = [], []
    for k, image in enumerate(images):
        ok = isinstance(image, dict) and _int(image.get("id"))
        ok = ok and isinstance(image.get("file_name"), str) and bool(_FILE_NAME.fullmatch(image["file_name"]))
        ok = ok and all(_int(image.get(key)) and image[key] > 0 for key in ("width", "height"))
        if not ok or image["file_name"] in (".", "..") or image["id"] in by_id:
            shown = str(image)[:80]
            raise _bad(
                path,
                f"images[{k}] is not an image entry with a unique id, a plain file_name, width and "
                f"height ({shown})",
            )
        by_id[image["id"]] = len(files)
        files.append(image["file_name"])
        sizes.append((image["width"], image["height"]))
    return by_id, tuple(files), np.array(sizes, dtype=np.int64).reshape(-1, 2)


def _bbox(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    )


def parse_annotations(path: Path, folder: Path) -> CocoObjects:
    """Every non-crowd object of the annotation file (iscrowd dropped, as the official reader)."""
    text = read_bounded(path, MAX_JSON_BYTES, "a COCO annotation file (the real one is 448 MB)")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _bad(path, f"not JSON ({str(exc)[:80]})") from None
    if not isinstance(data, dict):
        raise _bad(
            path, "not a COCO annotation file (expected an object with images, annotations, categories)"
        )
    image_of, files, sizes = _images(path, data.get("images"))
    categories = data.get("categories")
    if not isinstance(categories, list) or not all(
        isinstance(c, dict) and _int(c.get("id")) and isinstance(c.get("name"), str) for c in categories
    ):
        raise _bad(path, "no 'categories' list of {id, name} entries")
    category_of = {c["id"]: k for k, c in enumerate(categories)}
    annotations = data.get("annotations")
    if not isinstance(annotations, list):
        raise _bad(path, "no 'annotations' list")
    rows: list[tuple[int, int, int]] = []
    boxes: list[list[float]] = []
    for k, ann in enumerate(annotations):
        ok = isinstance(ann, dict) and _int(ann.get("id")) and ann.get("iscrowd", 0) in (0, 1)
        ok = ok and ann.get("image_id") in image_of and ann.get("category_id") in category_of
        if not ok or not _bbox(ann.get("bbox")):
            raise _bad(
                path,
                f"annotations[{k}] is not an object with an id, a known image_id and category_id, iscrowd "
                f"0 or 1 and a bbox of 4 finite numbers ({str(ann)[:80]})",
            )
        if ann.get("iscrowd", 0) == 0:
            rows.append((ann["id"], image_of[ann["image_id"]], category_of[ann["category_id"]]))
            boxes.append(ann["bbox"])
    table = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return CocoObjects(
        folder, files, table[:, 1], sizes, np.array(boxes, dtype=np.float64).reshape(-1, 4),
        table[:, 0], table[:, 2], tuple(c["name"] for c in categories),
    )  # fmt: skip


@lru_cache(maxsize=1)
def _cached(path: Path, folder: Path, mtime_ns: int, size: int) -> CocoObjects:
    return parse_annotations(path, folder)


def read_objects(root: Path) -> CocoObjects:
    """The root's objects, parsed once per process while the file is unchanged."""
    path = Path(root) / ANNOTATIONS
    folder = images_dir(root)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise DataSourceError(
            f"{path}: the COCO annotation file is missing: extract annotations_trainval2017.zip under "
            "-P coco_root (or COCO_ROOT)"
        ) from None
    return _cached(path, folder, info.st_mtime_ns, info.st_size)


def read_split(root: Path, split: str = SPLIT) -> SplitRead:
    """Every non-crowd object whose image is on disk; the others are counted missing."""
    if split != SPLIT:
        raise DataSourceError(f"unknown COCO split {split!r}: the training mix reads {SPLIT}")
    objects = read_objects(root)
    present = listing(objects.folder, "COCO image folder", "fix -P coco_root (or COCO_ROOT)")
    have_image = np.fromiter(
        (name in present for name in objects.files), dtype=bool, count=len(objects.files)
    )
    kept = objects.subset(have_image[objects.image]) if not have_image.all() else objects
    if len(kept) == 0:
        raise DataSourceError(
            f"{objects.folder} holds none of the images of {root / ANNOTATIONS}: fix -P coco_root (or "
            "COCO_ROOT), or extract train2017.zip there"
        )
    absent = int((~have_image).sum())
    note = f"{absent:,} of the {len(objects.files):,} images absent" if absent else ""
    return SplitRead("coco", "COCO", SPLIT, Path(root), kept, len(objects), images=True, note=note)


def read_sequence(path: Path, check_images: bool = True) -> Sequence:
    """One object from its index path `<image folder>/<file_name>#<annotation id>`."""
    image, _, ident = str(path).rpartition("#")
    folder = Path(image).parent
    root = folder.parent.parent if folder.parent.name == "images" else folder.parent
    objects = read_objects(root)
    found = np.flatnonzero(objects.ids == int(ident)) if ident.isdigit() else np.zeros(0, dtype=np.int64)
    if found.size == 0:
        raise DatasetFormatError(f"{path}: no such object in {root / ANNOTATIONS}: select the data again")
    seq = objects[int(found[0])]
    if check_images and not seq.frame_path(0).is_file():
        raise DatasetFormatError(f"{seq.frame_path(0)}: missing image: extract train2017.zip again")
    return seq


class Coco(LocalRoot):
    """COCO 2017 train from a local root (`coco_root` or `$COCO_ROOT`), for training only."""

    name = "coco"
    label = "COCO"
    format = "COCO 2017"
    setting = "coco_root"
    layout = "train2017/ and annotations/instances_train2017.json"
    protocol = "none (training only)"
    split_rule = "train2017, non-crowd objects"

    def classes(self, data: DataConfig, source: str) -> list[str]:
        return [SPLIT]

    def sequence_dirs(self, root: Path, class_name: str) -> list[Path]:
        """Each object as `<image folder>/<file_name>#<annotation id>` (what `read_sequence` reads)."""
        objects = read_split(root, class_name).sequences
        assert isinstance(objects, CocoObjects)
        return [
            objects.folder / f"{objects.files[int(i)]}#{int(ident)}"
            for i, ident in zip(objects.image, objects.ids, strict=True)
        ]

    def read_sequence(self, seq_dir: Path, check_images: bool = True) -> Sequence:
        return read_sequence(seq_dir, check_images)

    def read_split(self, root: Path, split: str, data: DataConfig) -> SplitRead:
        return read_split(root, split)


__all__ = [
    "ANNOTATIONS",
    "MIN_VISIBLE_SIDE",
    "Coco",
    "CocoObjects",
    "images_dir",
    "parse_annotations",
    "read_objects",
    "read_sequence",
    "read_split",
]
