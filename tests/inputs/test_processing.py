"""Crop geometry of inputs/processing.py on real JPEG files: where the target lands, padding, decode scale."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seqtrack_mlflow.inputs.processing import (
    box_from_crop,
    box_to_crop,
    crop_image,
    crop_window,
    load_crop,
    normalize,
    open_frame,
)

TARGET_RGB = (230, 30, 30)


def textured(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth coloured texture with R kept low, so the red target is the only strongly red region."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, 3)
    r = 50 + 25 * np.sin(xx / 23 + phase[0])
    g = 130 + 90 * np.sin(xx / 31 + phase[1]) * np.cos(yy / 19)
    b = 130 + 90 * np.cos(yy / 27 + phase[2]) * np.sin(xx / 41)
    return np.clip(np.stack([r, g, b], -1), 20, 255).astype(np.uint8)


def write_frame(path: Path, width: int, height: int, box: tuple[int, int, int, int], seed: int = 0) -> None:
    img = textured(width, height, seed)
    x, y, w, h = box
    img[max(y, 0) : y + h, max(x, 0) : x + w] = TARGET_RGB
    Image.fromarray(img).save(path, quality=95, subsampling=0)  # no chroma subsampling: crisp colour edges


def red_bbox(crop: np.ndarray) -> np.ndarray:
    """x0, y0, x1, y1 (pixel edges) of the pixels that are clearly the red target."""
    c = crop.astype(np.int32)
    mask = (c[..., 0] > 150) & (c[..., 1] < 90) & (c[..., 2] < 90)
    ys, xs = np.nonzero(mask)
    assert xs.size, "target not visible in the crop"
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def xyxy(box_xywh: np.ndarray) -> np.ndarray:
    return np.array([box_xywh[0], box_xywh[1], box_xywh[0] + box_xywh[2], box_xywh[1] + box_xywh[3]])


@pytest.mark.parametrize(
    "box, factor, out_size",
    [
        ((140, 90, 32, 32), 4.0, 128),  # 1 crop px per image px
        ((100, 60, 40, 24), 4.0, 64),  # shrunk about 2x
        ((150, 80, 20, 30), 2.0, 128),  # enlarged about 2.6x
    ],
)
def test_target_lands_at_box_to_crop(tmp_path: Path, box, factor: float, out_size: int) -> None:
    path = tmp_path / "f.jpg"
    write_frame(path, 320, 240, box)
    window = crop_window(box, factor, out_size)
    crop = load_crop(path, window)
    assert crop.shape == (out_size, out_size, 3) and crop.dtype == np.uint8
    expected = xyxy(box_to_crop(np.array(box, dtype=float), window))
    # Edge pixels blend target and background: allow about a third of a source pixel plus rounding.
    tol = 0.6 + 0.35 * window.resize_factor
    np.testing.assert_allclose(red_bbox(crop), expected, atol=tol)


def test_padding_outside_image_is_zero(tmp_path: Path) -> None:
    path = tmp_path / "f.jpg"
    box = (5, 8, 32, 32)
    write_frame(path, 320, 240, box)
    window = crop_window(box, 4.0, 128)  # side 128 at scale 1, reaching 40+ px left of and above the image
    assert window.x0 <= -40 and window.y0 <= -40
    crop = load_crop(path, window)
    left = int(-window.x0 * window.resize_factor) - 1
    top = int(-window.y0 * window.resize_factor) - 1
    assert (crop[:, :left] == 0).all() and (crop[:top] == 0).all()
    assert (crop[top + 3 :, left + 3 :] > 0).any(axis=-1).all()  # inside the image: texture >= 20
    np.testing.assert_allclose(red_bbox(crop), xyxy(box_to_crop(np.array(box, float), window)), atol=1.5)


@pytest.mark.parametrize("box", [(10, 20, 30, 50), (0, 0, 1, 1), (100.5, 40.25, 7.5, 300.0)])
@pytest.mark.parametrize("factor", [2.0, 4.0, 5.0])
def test_window_side_and_centre(box, factor: float) -> None:
    window = crop_window(box, factor, 256)
    x, y, w, h = box
    assert window.side == math.ceil(math.sqrt(w * h) * factor)
    assert abs(window.x0 + window.side / 2 - (x + w / 2)) <= 0.5
    assert abs(window.y0 + window.side / 2 - (y + h / 2)) <= 0.5
    assert window.resize_factor == pytest.approx(256 / window.side)


def test_box_from_crop_inverts_box_to_crop() -> None:
    rng = np.random.default_rng(0)
    boxes = np.concatenate([rng.uniform(-50, 500, (20, 2)), rng.uniform(1, 200, (20, 2))], axis=1)
    for box in boxes:
        window = crop_window(box * rng.uniform(0.8, 1.2), 4.0, 128)
        np.testing.assert_allclose(box_from_crop(box_to_crop(box, window), window), box, atol=1e-9)
    window = crop_window(boxes[0], 4.0, 128)
    np.testing.assert_allclose(box_from_crop(box_to_crop(boxes, window), window), boxes, atol=1e-9)


def test_reduced_scale_decode_matches_full_decode(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    box = (600, 300, 200, 180)
    write_frame(path, 1280, 720, box)
    window = crop_window(box, 4.0, 96)  # side ~760 px -> 96 px: the decoder may scale down 4x
    reduced, scale = open_frame(path, window)
    assert scale == pytest.approx(0.25)
    assert reduced.size == (320, 180)
    crop_fast = load_crop(path, window)
    full, full_scale = open_frame(path)
    assert full_scale == 1.0
    crop_full = crop_image(full, window, full_scale)
    diff = np.abs(crop_fast.astype(np.float32) - crop_full.astype(np.float32)).mean()
    assert diff < 2.0, diff
    expected = xyxy(box_to_crop(np.array(box, float), window))
    np.testing.assert_allclose(red_bbox(crop_fast), expected, atol=1.5)


def test_non_jpeg_is_decoded_at_full_scale(tmp_path: Path) -> None:
    path = tmp_path / "f.png"
    Image.fromarray(textured(640, 480)).save(path)
    img, scale = open_frame(path, crop_window((100, 100, 50, 50), 4.0, 32))
    assert scale == 1.0 and img.size == (640, 480) and img.mode == "RGB"


def test_normalize_layout_and_values() -> None:
    crops = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    crops[..., 0] = 255
    out = normalize(crops)
    assert out.shape == (2, 3, 4, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], (1 - 0.485) / 0.229, rtol=1e-5)
    np.testing.assert_allclose(out[:, 1], -0.456 / 0.224, rtol=1e-5)
