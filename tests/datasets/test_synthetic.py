"""Synthetic LaSOT generator: determinism, episodes, LaSOT format, sizes, protocol II coverage."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seqtrack_mlflow.config import ConfigError
from seqtrack_mlflow.datasets.base import DataSourceError, frame_size
from seqtrack_mlflow.datasets.lasot import LASOT_CLASSES, read_sequence, split_of
from seqtrack_mlflow.datasets.synthetic import generate_lasot, sequence_numbers, simulate_track


def _digest(seq_dir: Path) -> dict[str, str]:
    files = sorted(p for p in seq_dir.rglob("*") if p.is_file())
    return {str(p.relative_to(seq_dir)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def default_tree(tmp_path_factory) -> tuple[Path, list[Path], float]:
    root = tmp_path_factory.mktemp("synthetic")
    start = time.perf_counter()
    dirs = generate_lasot(root, ["airplane"], seed=5)  # defaults: 4 sequences, 60 frames, 320x240
    return root, dirs, time.perf_counter() - start


def test_defaults_write_a_lasot_tree_quickly(default_tree):
    root, dirs, seconds = default_tree
    assert seconds < 15  # "a few seconds" on a loaded 2-core machine
    assert [d.name for d in dirs] == ["airplane-1", "airplane-2", "airplane-3", "airplane-4"]
    for seq_dir in dirs:
        assert seq_dir.parent == root / "airplane"
        names = sorted(p.name for p in (seq_dir / "img").iterdir())
        assert names == [f"{i:08d}.jpg" for i in range(1, 61)]
        for flag_file in ("full_occlusion.txt", "out_of_view.txt"):
            text = (seq_dir / flag_file).read_text()
            assert "\n" not in text.strip() and set(text.strip().split(",")) <= {"0", "1"}
        gt_lines = (seq_dir / "groundtruth.txt").read_text().splitlines()
        assert len(gt_lines) == 60 and all(len(line.split(",")) == 4 for line in gt_lines)
        assert all(v.lstrip("-").isdigit() for line in gt_lines for v in line.split(","))  # integers
        assert (seq_dir / "nlp.txt").read_text().strip()


def test_same_seed_same_bytes_different_seed_differs(tmp_path):
    kwargs = dict(sequences_per_class=1, frames=24, size=(96, 64))
    a = generate_lasot(tmp_path / "a", ["bear"], seed=3, **kwargs)[0]
    b = generate_lasot(tmp_path / "b", ["bear"], seed=3, **kwargs)[0]
    c = generate_lasot(tmp_path / "c", ["bear"], seed=4, **kwargs)[0]
    assert _digest(a) == _digest(b)
    assert (a / "groundtruth.txt").read_bytes() != (c / "groundtruth.txt").read_bytes()
    assert (a / "img" / "00000001.jpg").read_bytes() != (c / "img" / "00000001.jpg").read_bytes()


def test_class_alone_equals_class_in_company(tmp_path):
    kwargs = dict(sequences_per_class=1, frames=22, size=(64, 48), seed=9)
    alone = generate_lasot(tmp_path / "alone", ["cat"], **kwargs)[0]
    together = generate_lasot(tmp_path / "together", ["bear", "cat"], **kwargs)[1]
    assert _digest(alone) == _digest(together)


def test_occlusion_out_of_view_and_stale_boxes(default_tree):
    _, dirs, _ = default_tree
    for seq_dir in dirs:
        seq = read_sequence(seq_dir)
        assert seq.full_occlusion.any() and seq.out_of_view.any()
        assert seq.visible[0]
        x, y, w, h = seq.boxes[0]
        assert x >= 0 and y >= 0 and x + w <= 320 and y + h <= 240 and w > 0 and h > 0
        # Out-of-view frames keep the last in-view box, as LaSOT annotations do.
        for i in np.flatnonzero(seq.out_of_view):
            np.testing.assert_array_equal(seq.boxes[i], seq.boxes[i - 1])
        assert seq.visible.sum() >= 0.7 * seq.num_frames


def test_target_moves_scales_and_stays_in_size_range():
    for seed in range(30):
        track = simulate_track(seed, "dog", 1, 80, (320, 240))
        frac_w, frac_h = track.target[:, 2] / 320, track.target[:, 3] / 240
        assert frac_w.min() >= 0.06 and frac_w.max() <= 0.34
        assert frac_h.min() >= 0.06 and frac_h.max() <= 0.34
        area = track.target[:, 2] * track.target[:, 3]
        assert area.max() / area.min() >= 2.5  # LaSOT-like scale variation: sides over 1.6x apart
        centres = track.target[:, :2] + track.target[:, 2:] / 2
        assert np.abs(np.diff(centres[~track.out_of_view], axis=0)).sum() > 50  # moves
        # Fast motion while in view: some step moves the target by over 0.4 of its side.
        step = np.linalg.norm(np.diff(centres, axis=0), axis=1) / np.sqrt(area[1:])
        in_view = ~track.out_of_view[1:] & ~track.out_of_view[:-1]
        assert step[in_view].max() > 0.4
        assert track.full_occlusion.any() and track.out_of_view.any() and not track.full_occlusion[0]


def test_jpegs_decode_to_the_stated_size(tmp_path, default_tree):
    _, dirs, _ = default_tree
    with Image.open(dirs[0] / "img" / "00000030.jpg") as image:
        assert image.format == "JPEG"
        assert np.asarray(image.convert("RGB")).shape == (240, 320, 3)
    big = generate_lasot(tmp_path, ["car"], sequences_per_class=1, frames=2, size=(1280, 720))[0]
    assert frame_size(read_sequence(big)) == (1280, 720)
    with Image.open(big / "img" / "00000002.jpg") as image:
        assert np.asarray(image.convert("RGB")).shape == (720, 1280, 3)


def test_target_stands_out_from_background(default_tree):
    """Trackable appearance: the target is more colourful than the (desaturated) scene around it."""
    _, dirs, _ = default_tree
    for seq_dir in dirs:
        seq = read_sequence(seq_dir)
        with Image.open(seq.frame_path(0)) as image:
            sat = np.asarray(image.convert("HSV"))[:, :, 1].astype(float)
        x, y, w, h = (int(v) for v in seq.boxes[0])
        inner = sat[y + h // 4 : y + 3 * h // 4, x + w // 4 : x + 3 * w // 4]
        mask = np.ones_like(sat, dtype=bool)
        mask[max(0, y - 4) : y + h + 4, max(0, x - 4) : x + w + 4] = False
        assert inner.mean() > sat[mask].mean() + 40


@pytest.mark.parametrize("count", [1, 2, 3, 4, 8, 20])
def test_sequence_numbers_cover_both_splits(count):
    for name in LASOT_CLASSES:
        numbers = sequence_numbers(name, count)
        assert numbers == sorted(set(numbers)) and len(numbers) == count
        splits = [split_of(name, k) for k in numbers]
        if count >= 2:
            assert "test" in splits and "train" in splits
        else:
            assert splits == ["train"]
    assert sequence_numbers("airplane", 4) == [1, 2, 3, 4]
    assert sequence_numbers("airplane", 20) == list(range(1, 21))


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(DataSourceError, match="unknown LaSOT class 'unicorn'"):
        generate_lasot(tmp_path, ["unicorn"])
    with pytest.raises(ConfigError, match="synthetic_sequences=21"):
        generate_lasot(tmp_path, ["cat"], sequences_per_class=21)
    with pytest.raises(ConfigError, match="too small"):
        generate_lasot(tmp_path, ["cat"], size=(16, 16))
