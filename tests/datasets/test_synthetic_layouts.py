"""The synthetic GOT-10k / TrackingNet / COCO trees: deterministic, and in each dataset's own layout."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from seqtrack_mlflow.datasets.synthetic_layouts import generate_coco, generate_got10k, generate_trackingnet


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return h.hexdigest()


def _write_all(root: Path) -> None:
    generate_got10k(root / "got10k", train=1, val=1, test=1, frames=6, size=(64, 48), seed=4)
    generate_trackingnet(
        root / "tn", chunks=(3,), videos=1, test=1, frames=6, size=(64, 48), seed=4, unextracted=1
    )
    generate_coco(root / "coco", images=2, size=(96, 64), seed=4)


def test_each_tree_is_a_pure_function_of_its_arguments(tmp_path):
    _write_all(tmp_path / "a")
    _write_all(tmp_path / "b")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


def test_the_layouts_carry_their_quirks(tmp_path):
    _write_all(tmp_path)
    got = tmp_path / "got10k"
    assert (got / "val" / "list.txt").read_text() == "GOT-10k_Val_000001\n"
    seq = got / "val" / "GOT-10k_Val_000001"
    assert sorted(p.name for p in seq.iterdir())[:2] == ["00000001.jpg", "00000002.jpg"]
    assert {"absence.label", "cover.label", "cut_by_image.label", "meta_info.ini"} <= {
        p.name for p in seq.iterdir()
    }
    assert (seq / "meta_info.ini").read_text().splitlines()[5].startswith("object_class: ")
    assert len((got / "test" / "GOT-10k_Test_000001" / "groundtruth.txt").read_text().splitlines()) == 1
    tn = tmp_path / "tn" / "TRAIN_3"
    assert (
        len(list((tn / "anno").iterdir())) == 2 and len(list((tn / "frames").iterdir())) == 1
    )  # one not extracted
    video = next((tn / "frames").iterdir())
    assert sorted(p.name for p in video.iterdir()) == ["0.jpg", "1.jpg", "2.jpg", "3.jpg", "4.jpg", "5.jpg"]
    data = json.loads((tmp_path / "coco" / "annotations" / "instances_train2017.json").read_text())
    assert {c["id"] for c in data["categories"]} == {1, 3, 18, 44}  # COCO's ids are not contiguous
    assert any(a["iscrowd"] for a in data["annotations"])
    assert any(min(a["bbox"][2:]) <= 50 for a in data["annotations"])
    assert all(len(i["file_name"]) == 16 for i in data["images"])
