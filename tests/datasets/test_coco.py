"""COCO reader: non-crowd objects as one-frame sequences, w > 50 and h > 50 visibility, both image
folder layouts, partial extraction, and one-line refusals of a damaged annotation file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from seqtrack_mlflow.datasets import coco, registry
from seqtrack_mlflow.datasets.base import DatasetFormatError, DataSourceError
from seqtrack_mlflow.datasets.synthetic_layouts import generate_coco


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coco")
    generate_coco(root, images=4, size=(160, 120), seed=5)
    return root


@pytest.fixture
def copy(tree, tmp_path) -> Path:
    shutil.copytree(tree, tmp_path / "COCO")
    return tmp_path / "COCO"


def _json(root: Path) -> dict:
    return json.loads((root / coco.ANNOTATIONS).read_text())


def test_every_non_crowd_object_is_a_one_frame_sequence(tree):
    data = _json(tree)
    kept = [a for a in data["annotations"] if a["iscrowd"] == 0]
    assert len(kept) < len(data["annotations"])  # the crowd annotation is dropped
    read = coco.read_split(tree)
    assert read.images and len(read.sequences) == len(kept) == read.expected and read.missing == 0
    names = {c["id"]: c["name"] for c in data["categories"]}
    files = {i["id"]: i["file_name"] for i in data["images"]}
    for k, ann in enumerate(kept):
        seq = read.sequences[k]
        assert (seq.name, seq.number, seq.class_name) == (
            str(ann["id"]),
            ann["id"],
            names[ann["category_id"]],
        )
        np.testing.assert_array_equal(seq.boxes, [ann["bbox"]])
        assert seq.num_frames == 1 and seq.frame_path(0) == tree / "train2017" / files[ann["image_id"]]
        w, h = ann["bbox"][2:]
        assert bool(seq.visible[0]) == (w > 50 and h > 50)  # the official rule
    assert not read.sequences.visible.all() and read.sequences.visible.any()
    columns = read.sequences.index_columns()
    assert columns["width"][0] == 160 and columns["frames"] == [1] * len(kept)


def test_the_official_images_folder_layout_and_the_entry(copy, monkeypatch):
    (copy / "images").mkdir()
    shutil.move(copy / "train2017", copy / "images" / "train2017")
    read = coco.read_split(copy)
    assert read.sequences[0].frame_path(0).parent == copy / "images" / "train2017"
    entry = registry.get("coco")
    path = entry.sequence_dirs(copy, "train2017")[2]
    assert entry.read_sequence(path).name == read.sequences[2].name
    monkeypatch.delenv("COCO_ROOT", raising=False)
    from seqtrack_mlflow.config import DataConfig

    with pytest.raises(DataSourceError, match=r"-P coco_root=/path or set COCO_ROOT"):
        entry.check(DataConfig(), "local")


def test_objects_of_images_not_extracted_are_counted_missing(copy):
    image = _json(copy)["images"][1]
    (copy / "train2017" / image["file_name"]).unlink()
    read = coco.read_split(copy)
    gone = [a for a in _json(copy)["annotations"] if a["image_id"] == image["id"] and a["iscrowd"] == 0]
    assert read.missing == len(gone) > 0 and "1 of the 4 images absent" in read.line()
    assert all(s.frame_path(0).is_file() for s in (read.sequences[i] for i in range(len(read.sequences))))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), r"annotations\[0\] is not an object"),
        (lambda d: d["annotations"][1].update(bbox=[1, 2, 3, float("nan")]), r"annotations\[1\]"),
        (lambda d: d["annotations"][2].update(image_id=-5), r"annotations\[2\] .* a known image_id"),
        (lambda d: d["images"][0].update(file_name="../../etc/passwd"), r"images\[0\] is not an image entry"),
        (lambda d: d.pop("categories"), r"no 'categories' list"),
    ],
)
def test_a_damaged_annotation_file_is_refused_in_one_line(copy, damage, message):
    data = _json(copy)
    damage(data)
    (copy / coco.ANNOTATIONS).write_text(json.dumps(data))
    with pytest.raises(DatasetFormatError, match=message) as info:
        coco.read_split(copy)
    assert "\n" not in str(info.value) and "instances_train2017.json" in str(info.value)


def test_not_json_and_missing_files_are_one_line(copy):
    (copy / coco.ANNOTATIONS).write_text("[" * 100_000)  # nested past the parser's recursion limit
    with pytest.raises(DatasetFormatError, match=r"instances_train2017.json: not JSON"):
        coco.read_split(copy)
    (copy / coco.ANNOTATIONS).unlink()
    with pytest.raises(DataSourceError, match=r"the COCO annotation file is missing"):
        coco.read_split(copy)
    shutil.rmtree(copy / "train2017")
    with pytest.raises(DataSourceError, match=r"train2017: the COCO image folder is missing"):
        coco.read_split(copy)
