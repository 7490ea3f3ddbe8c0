"""LaSOT reader: boxes, flags, visibility, frame paths, protocol II split, and refusal of bad files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from seqtrack_mlflow.datasets.base import frame_size
from seqtrack_mlflow.datasets.lasot import (
    LASOT_CLASSES,
    TEST_SEQUENCE_NUMBERS,
    LasotFormatError,
    available_classes,
    class_sequence_dirs,
    read_sequence,
    split_of,
)
from seqtrack_mlflow.datasets.synthetic import generate_lasot

SIZE = (128, 96)
FRAMES = 30


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lasot")
    generate_lasot(root, ["airplane"], sequences_per_class=2, frames=FRAMES, size=SIZE, seed=1)
    return root


@pytest.fixture
def seq_copy(tree, tmp_path) -> Path:
    """A private copy of airplane-2 that a test may corrupt."""
    dst = tmp_path / "airplane" / "airplane-2"
    shutil.copytree(tree / "airplane" / "airplane-2", dst)
    return dst


def _gt_rows(path: Path) -> list[list[float]]:
    return [[float(v) for v in line.split(",")] for line in path.read_text().splitlines()]


def test_reads_generated_sequence(tree):
    seq = read_sequence(tree / "airplane" / "airplane-2")
    assert (seq.name, seq.class_name, seq.number) == ("airplane-2", "airplane", 2)
    assert seq.num_frames == FRAMES and seq.boxes.shape == (FRAMES, 4) and seq.boxes.dtype == np.float64
    np.testing.assert_array_equal(seq.boxes, _gt_rows(seq.path / "groundtruth.txt"))
    occ = np.array(seq.path.joinpath("full_occlusion.txt").read_text().split(","), dtype=int) == 1
    oov = np.array(seq.path.joinpath("out_of_view.txt").read_text().split(","), dtype=int) == 1
    np.testing.assert_array_equal(seq.full_occlusion, occ)
    np.testing.assert_array_equal(seq.out_of_view, oov)
    expected_visible = ~occ & ~oov & (seq.boxes[:, 2] > 0) & (seq.boxes[:, 3] > 0)
    np.testing.assert_array_equal(seq.visible, expected_visible)
    assert seq.visible[0] and not seq.visible.all()  # frame 1 visible, some frames absent
    assert seq.frame_path(0) == seq.path / "img" / "00000001.jpg"
    assert seq.frame_path(FRAMES - 1).name == f"{FRAMES:08d}.jpg" and seq.frame_path(FRAMES - 1).is_file()
    with pytest.raises(IndexError):
        seq.frame_path(FRAMES)
    assert frame_size(seq) == SIZE


def test_visibility_uses_flags_and_box_size(seq_copy):
    lines = seq_copy.joinpath("groundtruth.txt").read_text().splitlines()
    lines[3] = "10,10,0,5"  # flagged visible but an invalid box
    seq_copy.joinpath("groundtruth.txt").write_text("\n".join(lines) + "\n")
    seq = read_sequence(seq_copy)
    assert not seq.visible[3]


def test_protocol_ii_split():
    assert split_of("airplane", 1) == "test" and split_of("airplane", 2) == "train"
    assert split_of("rubicCube", 14) == "test" and split_of("zebra", 1) == "train"
    assert len(LASOT_CLASSES) == 70 and list(LASOT_CLASSES) == sorted(LASOT_CLASSES, key=str.lower)
    assert set(TEST_SEQUENCE_NUMBERS) == set(LASOT_CLASSES)
    tests = [split_of(c, k) for c in LASOT_CLASSES for k in range(1, 21)].count("test")
    assert tests == 280  # 1120 train / 280 test
    with pytest.raises(LasotFormatError, match="unknown LaSOT class"):
        split_of("unicorn", 1)


def test_split_carried_by_sequences(tree):
    assert read_sequence(tree / "airplane" / "airplane-1").split == "test"
    assert read_sequence(tree / "airplane" / "airplane-2").split == "train"


def test_frame_count_from_groundtruth_not_images(seq_copy):
    extra = seq_copy / "img" / f"{FRAMES + 1:08d}.jpg"  # like monkey-17: more images than boxes
    shutil.copy(seq_copy / "img" / "00000001.jpg", extra)
    assert read_sequence(seq_copy).num_frames == FRAMES


def test_tolerates_tabs_spaces_bom_and_trailing_blank_lines(seq_copy):
    gt = seq_copy / "groundtruth.txt"
    before = read_sequence(seq_copy).boxes
    rows = gt.read_text().splitlines()
    gt.write_text("\ufeff" + "\n".join(r.replace(",", "\t", 1).replace(",", ", ") for r in rows) + "\n\n\n")
    np.testing.assert_array_equal(read_sequence(seq_copy).boxes, before)


def test_listing_helpers(tmp_path, tree):
    names = ("zebra/zebra-10", "zebra/zebra-2", "zebra/notes", "bear/bear-1", ".tmp/x", "unicorn/unicorn-1")
    for name in names:
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "testing_set.txt").write_text("zebra-10\n")
    assert available_classes(tmp_path) == ["bear", "zebra"]
    assert [p.name for p in class_sequence_dirs(tmp_path, "zebra")] == ["zebra-2", "zebra-10"]
    with pytest.raises(LasotFormatError, match="class folder is missing"):
        class_sequence_dirs(tmp_path, "cat")
    assert available_classes(tree) == ["airplane"]


def _error(seq_dir: Path) -> str:
    with pytest.raises(LasotFormatError) as info:
        read_sequence(seq_dir)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_refuses_wrong_column_count(seq_copy):
    gt = seq_copy / "groundtruth.txt"
    lines = gt.read_text().splitlines()
    lines[2] = "1,2,3"
    gt.write_text("\n".join(lines) + "\n")
    message = _error(seq_copy)
    assert f"{gt}:3:" in message and "found 3" in message


def test_refuses_non_numeric_value(seq_copy):
    gt = seq_copy / "groundtruth.txt"
    lines = gt.read_text().splitlines()
    lines[4] = "1,2,abc,4"
    gt.write_text("\n".join(lines) + "\n")
    message = _error(seq_copy)
    assert f"{gt}:5:" in message and "non-numeric" in message


def test_refuses_flag_length_mismatch(seq_copy):
    flags = seq_copy / "out_of_view.txt"
    flags.write_text(",".join(["0"] * (FRAMES - 1)))
    message = _error(seq_copy)
    assert str(flags) in message and f"{FRAMES - 1} flags" in message and f"{FRAMES} lines" in message


def test_refuses_bad_flag_value(seq_copy):
    flags = seq_copy / "full_occlusion.txt"
    values = ["0"] * FRAMES
    values[6] = "2"
    flags.write_text(",".join(values))
    message = _error(seq_copy)
    assert f"{flags}:1:" in message and "flag 7" in message


def test_refuses_missing_frame_image(seq_copy):
    (seq_copy / "img" / "00000017.jpg").unlink()
    message = _error(seq_copy)
    assert "00000017.jpg" in message and "line 17" in message
    assert read_sequence(seq_copy, check_images=False).num_frames == FRAMES  # the index re-read skips it


def test_refuses_empty_sequence(seq_copy):
    gt = seq_copy / "groundtruth.txt"
    gt.write_text("\n")
    message = _error(seq_copy)
    assert str(gt) in message and "empty" in message


def test_refuses_missing_file_and_bad_folder_name(seq_copy, tmp_path):
    (seq_copy / "full_occlusion.txt").unlink()
    assert "full_occlusion.txt" in _error(seq_copy)
    odd = tmp_path / "airplane_two"
    odd.mkdir()
    assert "not a LaSOT sequence folder name" in _error(odd)
