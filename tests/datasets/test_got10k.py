"""GOT-10k reader: the official splits, absence/cover visibility, val and test folders, partial
downloads, and one-line refusals of damaged sequences (trees written by the synthetic layout generator)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from seqtrack_mlflow.config import DataConfig
from seqtrack_mlflow.datasets import got10k, registry
from seqtrack_mlflow.datasets.base import DatasetFormatError, DataSourceError
from seqtrack_mlflow.datasets.synthetic_layouts import generate_got10k, got10k_train_names

FRAMES = 30
SIZE = (96, 72)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("got10k")
    generate_got10k(root, train=3, val=2, test=1, frames=FRAMES, size=SIZE, seed=2)
    return root


@pytest.fixture
def copy(tree, tmp_path) -> Path:
    """A private copy of the tree that a test may damage."""
    shutil.copytree(tree, tmp_path / "GOT-10k")
    return tmp_path / "GOT-10k"


def _labels(path: Path) -> np.ndarray:
    return np.array(path.read_text().split(), dtype=int)


def test_official_split_files_are_shipped_whole():
    sizes = {split: len(got10k.split_names(split)) for split in got10k.SPLIT_FILES}
    assert sizes == {"vottrain": 7086, "train_full": 9335, "train": 7934, "votval": 1249, "ltrval": 1401}
    full = got10k.split_names("train_full")
    assert set(full) == {f"GOT-10k_Train_{i:06d}" for i in range(1, 9336)}
    assert set(got10k.split_names("vottrain")) | set(got10k.split_names("votval")) < set(full)
    assert got10k.sequence_name(0) == "GOT-10k_Train_000001"  # index i is the (i + 1)-th folder


def test_reads_a_training_split_with_absence_and_cover_visibility(tree):
    read = got10k.read_split(tree, "vottrain")
    (outside,) = set(got10k_train_names(3)) - set(got10k.split_names("vottrain"))  # in train_full only
    names = [seq.name for seq in read.sequences]
    assert set(names) <= set(got10k.split_names("vottrain")) and len(names) == 3 and outside not in names
    assert read.expected == 7086 and read.missing == 7083
    assert "3 of the split's 7,086 sequences" in read.line() and "7,083 missing" in read.line()
    full = got10k.read_split(tree, "train_full")
    assert len(full.sequences) == 4 and outside in [s.name for s in full.sequences]
    seq = read.sequences[0]
    rows = [
        [float(v) for v in line.split(",")]
        for line in (seq.path / "groundtruth.txt").read_text().splitlines()
    ]
    np.testing.assert_array_equal(seq.boxes, rows)
    absence, cover = _labels(seq.path / "absence.label"), _labels(seq.path / "cover.label")
    valid = (seq.boxes[:, 2] > 0) & (seq.boxes[:, 3] > 0)
    np.testing.assert_array_equal(seq.visible, (absence == 0) & (cover > 0) & valid)  # official rule
    assert seq.visible[0] and not seq.visible.all() and seq.num_frames == FRAMES
    assert seq.frame_path(0) == seq.path / "00000001.jpg" and seq.frame_path(FRAMES - 1).is_file()
    assert (seq.split, seq.number) == ("train", int(seq.name[-6:]))
    meta_line_6 = (seq.path / "meta_info.ini").read_text().splitlines()[5]
    assert seq.class_name == meta_line_6.split(": ", 1)[1]  # object_class, as the official reader takes it


def test_val_and_test_folders_follow_their_list(tree):
    val = got10k.read_split(tree, "val")
    assert [s.name for s in val.sequences] == ["GOT-10k_Val_000001", "GOT-10k_Val_000002"]
    assert got10k.resolution(got10k.read_meta(val.sequences[0].path)) == SIZE
    test = got10k.read_split(tree, "test").sequences[0]
    assert test.split == "test" and test.num_frames == FRAMES  # the frame count is the images'
    assert np.isfinite(test.boxes[0]).all() and np.isnan(test.boxes[1:]).all()  # hidden ground truth
    assert got10k.read_meta(test.path) == {}


def test_a_partial_download_reads_what_is_there(copy):
    first = got10k.read_split(copy, "vottrain").sequences[0]
    shutil.rmtree(first.path)  # one zip part not downloaded
    read = got10k.read_split(copy, "vottrain")
    assert (
        len(read.sequences) == 2
        and read.missing == 7084
        and first.name not in [s.name for s in read.sequences]
    )
    for name in got10k_train_names(3):
        shutil.rmtree(copy / "train" / name, ignore_errors=True)
    with pytest.raises(
        DataSourceError, match=r"holds none of the 7,086 sequences of GOT-10k vottrain: fix -P got10k_root"
    ):
        got10k.read_split(copy, "vottrain")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "groundtruth.txt").write_text("1,2,3\n" * FRAMES), r"groundtruth.txt:1: expected 4"),
        (
            lambda d: (d / "cover.label").write_text("9\n" * FRAMES),
            r"cover.label:1: label 1 is '9', expected 0..8",
        ),
        (lambda d: (d / "absence.label").write_text("0\n" * (FRAMES - 1)), r"absence.label: 29 labels but"),
        (
            lambda d: (d / "00000007.jpg").unlink(),
            r"00000007.jpg: missing frame image for groundtruth.txt line 7",
        ),
        (lambda d: (d / "cover.label").unlink(), r"cover.label: file is missing"),
    ],
)
def test_a_damaged_sequence_is_refused_in_one_line_naming_the_file(copy, damage, message):
    seq_dir = copy / "val" / "GOT-10k_Val_000001"
    damage(seq_dir)
    with pytest.raises(DatasetFormatError, match=message) as info:
        got10k.read_split(copy, "val")
    assert "\n" not in str(info.value) and str(seq_dir) in str(info.value)


def test_a_damaged_list_is_refused_in_one_line(copy):
    (copy / "val" / "list.txt").write_text("GOT-10k_Val_000001\n../../etc\n")
    with pytest.raises(
        DatasetFormatError, match=r"val/list.txt:2: '../../etc' is not one of the GOT-10k val"
    ):
        got10k.read_split(copy, "val")
    (copy / "val" / "list.txt").write_bytes(
        b"GOT-10k_Val_000001\n" * 200_000
    )  # bounded: refused from its size
    with pytest.raises(DatasetFormatError, match=r"list.txt: \d+ bytes, over the \d+ allowed"):
        got10k.read_split(copy, "val")
    (copy / "val" / "list.txt").unlink()
    with pytest.raises(DataSourceError, match=r"val/list.txt: the val list is missing"):
        got10k.read_split(copy, "val")


def test_the_entry_takes_its_root_from_the_setting_or_the_variable(tree, monkeypatch):
    entry = registry.get("got10k")
    monkeypatch.delenv("GOT10K_ROOT", raising=False)
    with pytest.raises(
        DataSourceError, match=r"got10k needs its root folder .*-P got10k_root=/path or set GOT10K_ROOT"
    ):
        entry.check(DataConfig(), "local")
    monkeypatch.setenv("GOT10K_ROOT", str(tree))
    assert entry.used_settings(DataConfig(), "local") == {"got10k_root": str(tree.resolve())}
    assert entry.find_root(DataConfig()).detail == f"{tree.resolve()} ($GOT10K_ROOT)"
    with pytest.raises(DataSourceError, match=r"GOT-10k root /nowhere does not exist: fix -P got10k_root"):
        entry.check(DataConfig(got10k_root="/nowhere"), "local")
    dirs = entry.sequence_dirs(tree, "val")
    assert entry.read_sequence(dirs[1]).name == "GOT-10k_Val_000002"
