"""Deterministic synthetic GOT-10k, TrackingNet and COCO 2017 trees, each in its real on-disk layout
with its quirks, so every reader, the training mix and the benchmarks are tested offline.

The sequences are the LaSOT generator's (`synthetic.simulate_track` + `synthetic.frame_painter`: a
textured target that moves, scales, is occluded and leaves the view), written the way each dataset
writes them:
- GOT-10k: `train/`, `val/`, `test/` with `list.txt`; `GOT-10k_Train_NNNNNN/00000001.jpg ...`,
  `groundtruth.txt` (4-decimal floats), `absence.label` and `cover.label` (one value a line; cover in
  eighths, 0 while absent), `cut_by_image.label`, `meta_info.ini` (object_class on line 6, resolution);
  test folders with the first box only and no labels. Train sequences are taken from the official
  `vottrain` split, plus one of `train_full` that `vottrain` leaves out.
- TrackingNet: `TRAIN_<k>/anno/<video>.txt` and `TRAIN_<k>/frames/<video>/0.jpg ...` (from 0, not
  padded), video names like YouTube ids (`-` and `_` included), absent frames annotated 0,0,0,0 (its
  visibility is w > 0 and h > 0); `TEST/` with the first box only; optionally annotation files whose
  frames were never extracted (a partial download).
- COCO: `train2017/000000NNNNNN.jpg` and `annotations/instances_train2017.json` with non-contiguous
  category ids, a crowd annotation and objects under the 50-pixel visibility side.

Labelled synthetic: nothing here is real data. Every tree is a pure function of its arguments.
"""

from __future__ import annotations

import json
from collections.abc import Sequence as Seq
from pathlib import Path

import numpy as np
from PIL import Image

from . import synthetic_textures as textures
from .got10k import split_names
from .lasot import LASOT_CLASSES
from .synthetic import JPEG_QUALITY, Track, frame_painter, simulate_track

GOT10K, TRACKINGNET, COCO = 1, 2, 3  # layout tags: each layout draws its own sequences
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
COCO_CATEGORIES = (
    (1, "person", "person"),
    (3, "car", "vehicle"),
    (18, "dog", "animal"),
    (44, "bottle", "kitchen"),
)


def _layout_seed(seed: int, layout: int) -> int:
    return (seed + 1_000_003 * layout) % 2**63


def _sequence(seed: int, layout: int, k: int, frames: int, size: tuple[int, int]) -> tuple[Track, str, int]:
    """The k-th sequence of a layout: its geometry, and the (class, number) that seeds its pixels."""
    class_name, number = LASOT_CLASSES[k % len(LASOT_CLASSES)], 100 + k
    return simulate_track(_layout_seed(seed, layout), class_name, number, frames, size), class_name, number


def _write_frames(folder: Path, track: Track, seed: int, layout: int, k: int, names: Seq[str], size) -> str:
    class_name, number = LASOT_CLASSES[k % len(LASOT_CLASSES)], 100 + k
    paint, looks = frame_painter(_layout_seed(seed, layout), class_name, number, track, size)
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        paint(i).save(folder / name, quality=JPEG_QUALITY)
    return looks


def _inside_fraction(track: Track, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    x0, y0, w, h = (track.target[:, i].astype(np.float64) for i in range(4))
    inside_w = np.clip(np.minimum(x0 + w, width) - np.maximum(x0, 0), 0, None)
    inside_h = np.clip(np.minimum(y0 + h, height) - np.maximum(y0, 0), 0, None)
    return inside_w * inside_h / (w * h)


def _lines(values: np.ndarray) -> str:
    return "".join(f"{int(v)}\n" for v in values)


def _got10k_sequence(
    seq_dir: Path, seed: int, k: int, frames: int, size: tuple[int, int], test: bool
) -> None:
    track, class_name, _ = _sequence(seed, GOT10K, k, frames, size)
    looks = _write_frames(seq_dir, track, seed, GOT10K, k, [f"{i + 1:08d}.jpg" for i in range(frames)], size)
    boxes = track.groundtruth.astype(np.float64)
    rows = boxes[:1] if test else boxes  # the test set hides every box but the first
    (seq_dir / "groundtruth.txt").write_text(
        "".join(f"{x:.4f},{y:.4f},{w:.4f},{h:.4f}\n" for x, y, w, h in rows)
    )
    if test:
        return
    absent = track.full_occlusion | track.out_of_view
    cover = np.where(absent, 0, np.clip(np.ceil(_inside_fraction(track, size) * 8), 1, 8))
    cut = _inside_fraction(track, size) < 1.0
    (seq_dir / "absence.label").write_text(_lines(absent))
    (seq_dir / "cover.label").write_text(_lines(cover))
    (seq_dir / "cut_by_image.label").write_text(_lines(cut))
    meta = [
        "[METAINFO]", "url: synthetic", "begin_time: 0", "end_time: 0", "media_type: synthetic",
        f"object_class: {looks} {class_name}", "motion_class: moving", "major_class: synthetic",
        "root_class: object", "motion_adverb: smoothly", "anno_fps: 10Hz",
        f"resolution: ({size[0]}, {size[1]})",
    ]  # fmt: skip
    (seq_dir / "meta_info.ini").write_text("\n".join(meta) + "\n")


def got10k_train_names(count: int) -> list[str]:
    """`count` sequences of the official vottrain split (lowest numbers first), then one of train_full
    that vottrain leaves out: a reader must take the split's, not the folder's, sequences."""
    vottrain = set(split_names("vottrain"))
    names = sorted(vottrain)[:count]
    outside = sorted(set(split_names("train_full")) - vottrain)[:1]
    return sorted(names + outside)


def generate_got10k(
    root: Path, train: int = 3, val: int = 2, test: int = 1, frames: int = 30, size=(160, 120), seed: int = 0
) -> dict[str, list[Path]]:
    """Write `<root>/train|val|test/` with `list.txt`; returns the sequence folders per folder."""
    written: dict[str, list[Path]] = {}
    k = 0
    plan = {
        "train": got10k_train_names(train),
        "val": [f"GOT-10k_Val_{i:06d}" for i in range(1, val + 1)],
        "test": [f"GOT-10k_Test_{i:06d}" for i in range(1, test + 1)],
    }
    for folder, names in plan.items():
        if not names:
            continue
        (Path(root) / folder).mkdir(parents=True, exist_ok=True)
        (Path(root) / folder / "list.txt").write_text("".join(f"{name}\n" for name in names))
        for name in names:
            _got10k_sequence(Path(root) / folder / name, seed, k, frames, size, test=folder == "test")
            written.setdefault(folder, []).append(Path(root) / folder / name)
            k += 1
    return written


def video_name(rng: np.random.Generator, k: int) -> str:
    """A YouTube-like id plus a suffix; every other one starts with `-`."""
    chars = rng.integers(0, len(_ID_ALPHABET), size=11)
    name = "".join(_ID_ALPHABET[c] for c in chars)
    return ("-" + name[1:] if k % 2 == 0 else name) + f"_{k % 3}"


def _trackingnet_video(
    chunk_dir: Path, name: str, seed: int, k: int, frames: int, size, test: bool, extract: bool
) -> None:
    track, _, _ = _sequence(seed, TRACKINGNET, k, frames, size)
    absent = track.full_occlusion | track.out_of_view
    boxes = np.where(absent[:, None], 0, track.groundtruth).astype(np.float64)  # absent: 0,0,0,0
    rows = boxes[:1] if test else boxes
    (chunk_dir / "anno").mkdir(parents=True, exist_ok=True)
    (chunk_dir / "anno" / f"{name}.txt").write_text(
        "".join(f"{x:.1f},{y:.1f},{w:.1f},{h:.1f}\n" for x, y, w, h in rows)
    )
    if extract:
        _write_frames(
            chunk_dir / "frames" / name,
            track,
            seed,
            TRACKINGNET,
            k,
            [f"{i}.jpg" for i in range(frames)],
            size,
        )


def generate_trackingnet(
    root: Path,
    chunks: Seq[int] = (0, 1),
    videos: int = 2,
    test: int = 1,
    frames: int = 30,
    size=(160, 120),
    seed: int = 0,
    unextracted: int = 0,
) -> dict[str, list[Path]]:
    """Write `TRAIN_<k>/` for each chunk (`videos` extracted videos plus `unextracted` annotation files
    without frames) and `TEST/`; returns the extracted videos' frame folders per chunk."""
    rng = np.random.default_rng([_layout_seed(seed, TRACKINGNET), 7])
    written: dict[str, list[Path]] = {}
    k = 0
    plan = [(f"TRAIN_{c}", videos, unextracted) for c in chunks] + ([("TEST", test, 0)] if test else [])
    for chunk, count, hidden in plan:
        for j in range(count + hidden):
            name, extract = video_name(rng, k), j < count
            _trackingnet_video(Path(root) / chunk, name, seed, k, frames, size, chunk == "TEST", extract)
            if extract:
                written.setdefault(chunk, []).append(Path(root) / chunk / "frames" / name)
            k += 1
    return written


def _coco_object(rng: np.random.Generator, size: tuple[int, int], small: bool) -> list[float]:
    width, height = size
    large = max(56.0, 0.8 * min(width, height))  # over the 50-pixel visibility side
    side = rng.uniform(12, 40, size=2) if small else rng.uniform(51, large, size=2)
    side = np.minimum(side, [width - 1, height - 1])
    x, y = rng.uniform(0, width - side[0]), rng.uniform(0, height - side[1])
    return [round(float(x), 2), round(float(y), 2), round(float(side[0]), 2), round(float(side[1]), 2)]


def generate_coco(
    root: Path, images: int = 4, size=(192, 144), seed: int = 0, folder: str = "train2017"
) -> Path:
    """Write `<root>/<folder>/` images and `annotations/instances_train2017.json`: 2-3 objects an
    image (one under 50 pixels a side), a crowd annotation on the first image. Returns the JSON file."""
    rng = np.random.default_rng([_layout_seed(seed, COCO), 11])
    width, height = size
    image_dir = Path(root) / folder
    image_dir.mkdir(parents=True, exist_ok=True)
    entries, annotations = [], []
    for i in range(images):
        image_id = int(rng.integers(1, 600_000))
        while image_id in {e["id"] for e in entries}:
            image_id += 1
        file_name = f"{image_id:012d}.jpg"
        frame = Image.fromarray(textures.background(rng, width, height))
        count = int(rng.integers(2, 4))
        for j in range(count):
            bbox = _coco_object(rng, size, small=j == count - 1)
            texture, mask, _ = textures.target_texture(rng)
            w, h = max(1, round(bbox[2])), max(1, round(bbox[3]))
            frame.paste(texture.resize((w, h)), (round(bbox[0]), round(bbox[1])), mask.resize((w, h)))
            category = COCO_CATEGORIES[int(rng.integers(len(COCO_CATEGORIES)))][0]
            crowd = int(i == 0 and j == 0)
            annotations.append(
                {"segmentation": [[bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1], bbox[0], bbox[1] + bbox[3]]],
                 "area": round(bbox[2] * bbox[3], 2), "iscrowd": crowd, "image_id": image_id, "bbox": bbox,
                 "category_id": category, "id": 900_000 + len(annotations)}
            )  # fmt: skip
        frame.save(image_dir / file_name, quality=JPEG_QUALITY)
        entries.append(
            {"license": 1, "file_name": file_name, "height": height, "width": width, "id": image_id}
        )
    data = {
        "info": {"description": "synthetic COCO-format data (not COCO)", "year": 2017},
        "licenses": [{"id": 1, "name": "synthetic"}],
        "images": entries,
        "annotations": annotations,
        "categories": [{"supercategory": s, "id": c, "name": n} for c, n, s in COCO_CATEGORIES],
    }
    path = Path(root) / "annotations" / "instances_train2017.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


__all__ = ["generate_coco", "generate_got10k", "generate_trackingnet", "got10k_train_names", "video_name"]
