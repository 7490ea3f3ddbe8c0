"""TrackingNet reader: chunks, frames numbered from 0, w > 0 and h > 0 visibility, a chunk subset,
partial downloads and one-line refusals of damaged videos (trees written by the layout generator)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from seqtrack_mlflow.config import ConfigError, DataConfig
from seqtrack_mlflow.datasets import registry, trackingnet
from seqtrack_mlflow.datasets.base import DatasetFormatError, DataSourceError
from seqtrack_mlflow.datasets.synthetic_layouts import generate_trackingnet

FRAMES = 30
SIZE = (96, 72)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trackingnet")
    generate_trackingnet(
        root, chunks=(0, 2), videos=2, test=1, frames=FRAMES, size=SIZE, seed=3, unextracted=1
    )
    return root


@pytest.fixture
def copy(tree, tmp_path) -> Path:
    shutil.copytree(tree, tmp_path / "TrackingNet")
    return tmp_path / "TrackingNet"


def test_reads_chunks_with_frames_from_zero_and_size_visibility(tree):
    read = trackingnet.read_split(tree, "train", "0,2")
    assert len(read.sequences) == 4 and read.expected == 6 and read.missing == 2  # 1 unextracted a chunk
    assert "4 of the split's 6 sequences" in read.line() and read.split == "train"
    assert read.line().endswith("; chunks TRAIN_0, TRAIN_2")
    seq = read.sequences[0]
    anno = seq.path.parent.parent / "anno" / f"{seq.name}.txt"
    rows = np.array([[float(v) for v in line.split(",")] for line in anno.read_text().splitlines()])
    np.testing.assert_array_equal(seq.boxes, rows)
    np.testing.assert_array_equal(seq.visible, (rows[:, 2] > 0) & (rows[:, 3] > 0))  # the official rule
    assert seq.visible[0] and not seq.visible.all()  # absent frames are annotated 0,0,0,0
    assert (
        seq.frame_path(0) == seq.path / "0.jpg"
        and seq.frame_path(FRAMES - 1) == seq.path / f"{FRAMES - 1}.jpg"
    )
    assert seq.frame_path(FRAMES - 1).is_file() and (seq.class_name, seq.number) == ("TRAIN_0", 0)
    assert any(s.name.startswith("-") for s in read.sequences)  # YouTube ids may start with '-'


def test_a_chunk_subset_and_absent_chunks(tree):
    only = trackingnet.read_split(tree, "train", "2")
    assert {s.class_name for s in only.sequences} == {"TRAIN_2"} and "chunks TRAIN_2" in only.line()
    every = trackingnet.read_split(tree, "train", "all")  # the other 10 chunks are not downloaded
    assert len(every.sequences) == 4 and every.split == "train"
    assert "chunks TRAIN_1, TRAIN_3" in every.line() and "absent (not counted)" in every.line()
    with pytest.raises(DataSourceError, match=r"holds no extracted video of TrackingNet TRAIN_5"):
        trackingnet.read_split(tree, "train", "5")
    with pytest.raises(ConfigError, match=r"trackingnet_chunks=12 is invalid"):
        trackingnet.read_split(tree, "train", "12")


def test_test_chunk_holds_the_first_box_only(tree):
    seq = trackingnet.read_split(tree, "test").sequences[0]
    assert seq.split == "test" and seq.num_frames == FRAMES and seq.class_name == "TEST"
    assert np.isfinite(seq.boxes[0]).all() and np.isnan(seq.boxes[1:]).all()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda seq, anno: (seq / "5.jpg").unlink(), r"5.jpg: missing frame image for .* line 6 \(of 30\)"),
        (lambda seq, anno: anno.write_text("1,2,x,4\n" * FRAMES), r"\.txt:1: non-numeric value"),
        (lambda seq, anno: anno.write_text("1,2,3,4\n" * (FRAMES + 65)), r"\.txt: 95 lines but .* holds 30"),
    ],
)
def test_a_damaged_video_is_refused_in_one_line_naming_the_file(copy, damage, message):
    seq = trackingnet.read_split(copy, "train", "0").sequences[0].path
    damage(seq, seq.parent.parent / "anno" / f"{seq.name}.txt")
    with pytest.raises(DatasetFormatError, match=message) as info:
        trackingnet.read_split(copy, "train", "0")
    assert "\n" not in str(info.value)


def test_a_chunk_without_its_annotations_is_one_line(copy):
    shutil.rmtree(copy / "TRAIN_0" / "anno")
    with pytest.raises(
        DataSourceError, match=r"TRAIN_0/anno: annotation folder is missing: extract TRAIN_0's anno.zip"
    ):
        trackingnet.read_split(copy, "train", "0,2")


def test_the_entry_lists_its_chunks_and_reads_a_video(tree, monkeypatch):
    entry = registry.get("trackingnet")
    monkeypatch.setenv("TRACKINGNET_ROOT", str(tree))
    data = DataConfig(trackingnet_chunks="0,2")
    assert entry.classes(data, "local") == ["TRAIN_0", "TRAIN_2", "TEST"]
    dirs = entry.sequence_dirs(entry.root(data), "TRAIN_2")
    assert len(dirs) == 2 and entry.read_sequence(dirs[0]).class_name == "TRAIN_2"
    monkeypatch.delenv("TRACKINGNET_ROOT")
    with pytest.raises(DataSourceError, match=r"-P trackingnet_root=/path or set TRACKINGNET_ROOT"):
        entry.check(data, "local")
