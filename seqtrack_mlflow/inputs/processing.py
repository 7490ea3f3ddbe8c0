"""Crop geometry and image loading shared by training and tracking.

The crop follows pytracking's `sample_target` (square side ceil(sqrt(w*h) * factor) centred on the
box, zero padding outside the image, resized to the output size) but does crop, pad and resize in one
PIL affine pass, and asks the JPEG decoder for a reduced-resolution decode (DCT scaling through
`Image.draft`) when the crop is being shrunk by 2x or more anyway. No per-pixel Python.

`load_crop` hands JPEG frames to the region decoder (`inputs/jpeg.py`): it decodes only the rows and
columns the crop reads and cuts the same crop as the PIL pass, to the bit; PIL is its fallback.

A frame file that cannot be opened or decoded raises `datasets.base.FrameError`: one line naming the
file, never PIL's traceback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from seqtrack_mlflow.datasets.base import DECODE_ERRORS, frame_error
from seqtrack_mlflow.inputs import jpeg

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass(frozen=True)
class CropWindow:
    """A square window in full-image pixel coordinates and its scale to the output crop."""

    x0: float
    y0: float
    side: float
    out_size: int

    @property
    def resize_factor(self) -> float:
        """Output pixels per image pixel (official `resize_factor`)."""
        return self.out_size / self.side


# Box coordinates and crop sides past this are no frame's (JPEG frames are at most 65535 px a side);
# the bound keeps every window far inside what the decoders' arithmetic handles.
WINDOW_LIMIT = 1e7


class CropWindowError(ValueError):
    """A box no crop window can be cut around (non-finite or absurdly large): one line naming it."""


def crop_window(box_xywh: np.ndarray | tuple[float, ...], factor: float, out_size: int) -> CropWindow:
    """The square crop of side ceil(sqrt(w*h) * factor) centred on the box (pytracking rounding).
    A box or side that is not finite or is past +-WINDOW_LIMIT pixels raises CropWindowError."""
    x, y, w, h = (float(v) for v in box_xywh)
    exact_side = math.sqrt(max(w * h, 1e-12)) * factor
    if not all(abs(v) <= WINDOW_LIMIT for v in (x, y, w, h, exact_side)):  # NaN fails too
        raise CropWindowError(
            f"box (x, y, w, h) = ({x:g}, {y:g}, {w:g}, {h:g}) with crop factor {factor:g} gives no crop: "
            f"the box and the crop side must be finite and within ±{WINDOW_LIMIT:,.0f} pixels "
            "(give boxes in the frame's pixels)"
        )
    side = max(math.ceil(exact_side), 1)
    x0 = round(x + 0.5 * w - side * 0.5)
    y0 = round(y + 0.5 * h - side * 0.5)
    return CropWindow(float(x0), float(y0), float(side), out_size)


def box_to_crop(box_xywh: np.ndarray, window: CropWindow) -> np.ndarray:
    """Map an image box (x, y, w, h) into the crop's continuous pixel coordinates.

    Continuous as the crop's resampling: crop pixel i covers [i, i + 1), so the crop's centre
    x0 + side / 2 lands at out_size / 2. `model.tokens.box_to_tokens` turns this into the official
    label about the crop centre.
    """
    box = np.asarray(box_xywh, dtype=np.float64)
    r = window.resize_factor
    xy = (box[..., :2] - np.array([window.x0, window.y0])) * r
    wh = box[..., 2:] * r
    return np.concatenate([xy, wh], axis=-1)


def box_from_crop(box_xywh: np.ndarray, window: CropWindow) -> np.ndarray:
    """Inverse of `box_to_crop`: crop pixels back to image pixels."""
    box = np.asarray(box_xywh, dtype=np.float64)
    r = window.resize_factor
    xy = box[..., :2] / r + np.array([window.x0, window.y0])
    wh = box[..., 2:] / r
    return np.concatenate([xy, wh], axis=-1)


def open_frame(path: str | Path, window: CropWindow | None = None) -> tuple[Image.Image, float]:
    """Open a frame, decoding a JPEG at 1/2, 1/4 or 1/8 scale when the crop shrinks it that much.

    Returns the decoded RGB image and the factor from full-resolution to decoded pixel coordinates.
    A missing, truncated or non-image file raises `datasets.base.FrameError` naming it.
    """
    try:
        return _open_frame(path, window)
    except DECODE_ERRORS as exc:
        raise frame_error(path, exc) from None


def reduction(window: CropWindow | None) -> int:
    """The JPEG DCT scale divisor for a crop: 1, 2, 4 or 8, the largest the crop's shrink allows."""
    scale = 1
    if window is not None:
        shrink = window.side / window.out_size  # image pixels per output pixel
        while scale < 8 and shrink >= 2 * scale:
            scale *= 2
    return scale


def _open_frame(path: str | Path, window: CropWindow | None) -> tuple[Image.Image, float]:
    img = Image.open(path)
    full_w, full_h = img.size
    scale = 1
    if window is not None and img.format == "JPEG":
        scale = reduction(window)
        if scale > 1:
            # Floor, so a width that is not a multiple of 8 still gets the largest reduction.
            drafted = img.draft("RGB", (max(1, full_w // scale), max(1, full_h // scale)))
            # DCT scaling maps decoded pixel i to full-resolution pixels [i*k, (i+1)*k) for the
            # factor k the decoder picked: draft's box is the frame in k-pixels, (0, 0, w / k, h / k)
            # (a tiny frame's decoded size does not give k: 14 px at 1/8 decode to 2, not 14 / 7).
            scale = round(full_w / drafted[1][2]) if drafted else 1
    img.load()
    if img.mode != "RGB":  # convert() copies the frame even when it is RGB already
        img = img.convert("RGB")
    return img, 1.0 / scale


def window_extent(window: CropWindow, decode_scale: float) -> tuple[float, float, float, float]:
    """The window as (x0, y0, x1, y1) in the pixels of a frame decoded at `decode_scale`: what both the
    PIL pass and the region decoder resample, so their crops agree to the bit."""
    s = decode_scale
    return (window.x0 * s, window.y0 * s, (window.x0 + window.side) * s, (window.y0 + window.side) * s)


def crop_image(img: Image.Image, window: CropWindow, decode_scale: float = 1.0) -> np.ndarray:
    """Crop + zero-pad + bilinear resize in one affine pass. Returns uint8 (out, out, 3)."""
    out = img.transform(
        (window.out_size, window.out_size),
        Image.Transform.EXTENT,
        window_extent(window, decode_scale),
        Image.Resampling.BILINEAR,
    )
    return np.asarray(out)


def load_crop(
    path: str | Path, window: CropWindow, out: np.ndarray | None = None, flip: bool = False
) -> np.ndarray:
    """Decode a frame (at reduced scale where possible), cut the window out of it (mirrored when
    `flip`) into `out` (a new (n, n, 3) uint8 array when None) and return it.

    With the region decoder (`jpeg.decoder()`) only the part of a JPEG the crop reads is decoded;
    anything it refuses, and every frame with the PIL decoder, goes through PIL: the same crop.
    """
    if out is None:
        out = np.empty((window.out_size, window.out_size, 3), dtype=np.uint8)
    if jpeg.decoder() == "region":
        try:
            data = jpeg.read_bytes(path)
        except OSError as exc:
            raise frame_error(path, exc) from None
        if jpeg.crop(data, *_scaled_extent(window), out, flip):
            return out
    img, scale = open_frame(path, window)
    crop = crop_image(img, window, scale)
    out[...] = crop[:, ::-1] if flip else crop
    return out


def _scaled_extent(window: CropWindow) -> tuple[int, tuple[float, float, float, float]]:
    """The DCT scale for the window and its extent in that scale's pixels."""
    scale = reduction(window)
    return scale, window_extent(window, 1.0 / scale)


def crop_jpeg_bytes(data: bytes, window: CropWindow) -> np.ndarray | None:
    """`crop_image(*open_frame(...))` of a JPEG held in memory, by the region decoder; None when it
    is not built or refuses the data (the caller then uses PIL, which accepts or refuses the file)."""
    out = np.empty((window.out_size, window.out_size, 3), dtype=np.uint8)
    return out if jpeg.crop(data, *_scaled_extent(window), out) else None


def normalize(crops_uint8: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 with ImageNet mean/std."""
    x = crops_uint8.astype(np.float32) / 255.0
    x = (x - IMAGENET_MEAN) / IMAGENET_STD
    return np.moveaxis(x, -1, -3).copy()
