"""Crop geometry and image loading shared by training and tracking.

The crop follows pytracking's `sample_target` (square side ceil(sqrt(w*h) * factor) centred on the
box, zero padding outside the image, resized to the output size) but does crop, pad and resize in one
PIL affine pass, and asks the JPEG decoder for a reduced-resolution decode (DCT scaling through
`Image.draft`) when the crop is being shrunk by 2x or more anyway. No per-pixel Python.

With `SEQTRACK_JPEG_DECODER=simplejpeg` (`data/jpeg.py`; PIL is the default), `load_crop` decodes JPEG
frames with simplejpeg (the same libjpeg-turbo pixels at the same DCT scale) and cuts the crop with
`crop_array`, a separable numpy version of the PIL pass that reads only the rows and columns the crop
samples; the two paths give the same crop within +-1 level of rounding.

A frame file that cannot be opened or decoded raises `lasot.FrameError`: one line naming the file,
never PIL's traceback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from seqtrack_mlflow.data import jpeg
from seqtrack_mlflow.data.lasot import DECODE_ERRORS, frame_error

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_TRUNC_EPS = np.float32(1e-3)


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


def crop_window(box_xywh: np.ndarray | tuple[float, ...], factor: float, out_size: int) -> CropWindow:
    """The square crop of side ceil(sqrt(w*h) * factor) centred on the box (pytracking rounding)."""
    x, y, w, h = (float(v) for v in box_xywh)
    side = math.ceil(math.sqrt(max(w * h, 1e-12)) * factor)
    side = max(side, 1)
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
    A missing, truncated or non-image file raises `lasot.FrameError` naming it.
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
            img.draft("RGB", (max(1, full_w // scale), max(1, full_h // scale)))
            # DCT scaling maps decoded pixel i to full-resolution pixels [i*k, (i+1)*k) for the
            # factor k the decoder picked, whatever the rounding of the decoded size.
            scale = round(full_w / img.size[0]) if img.size[0] else 1
    img.load()
    if img.mode != "RGB":  # convert() copies the frame even when it is RGB already
        img = img.convert("RGB")
    return img, 1.0 / scale


def crop_image(img: Image.Image, window: CropWindow, decode_scale: float = 1.0) -> np.ndarray:
    """Crop + zero-pad + bilinear resize in one affine pass. Returns uint8 (out, out, 3)."""
    s = decode_scale
    extent = (
        window.x0 * s,
        window.y0 * s,
        (window.x0 + window.side) * s,
        (window.y0 + window.side) * s,
    )
    out = img.transform(
        (window.out_size, window.out_size), Image.Transform.EXTENT, extent, Image.Resampling.BILINEAR
    )
    return np.asarray(out)


def _axis_taps(start: float, step: float, count: int, size: int) -> tuple[np.ndarray, ...]:
    """PIL's bilinear taps along one axis: output i samples start + (i + 0.5) * step, which reads 0
    outside [0, size) and else interpolates the two nearest pixel centres (clamped at the edge).
    Returns the two source indices, the fraction of the second and the 0/1 inside mask."""
    pos = start + (np.arange(count, dtype=np.float64) + 0.5) * step
    inside = ((pos >= 0.0) & (pos < size)).astype(np.float32)
    p = pos - 0.5
    i0 = np.floor(p)
    frac = (p - i0).astype(np.float32)
    i0 = i0.astype(np.intp)
    return np.clip(i0, 0, size - 1), np.clip(i0 + 1, 0, size - 1), frac, inside


def crop_array(image: np.ndarray, window: CropWindow, decode_scale: float = 1.0) -> np.ndarray:
    """`crop_image` on an (H, W, 3) uint8 array, separably (rows, then columns), touching only the
    pixels the crop samples. PIL's arithmetic (a + (b - a) * t, truncated to uint8) in float32: equal
    to PIL's double-precision pass but for rare +-1 where a value lands within float32 rounding of an
    integer."""
    s = decode_scale
    n = window.out_size
    height, width = image.shape[:2]
    step = window.side * s / n
    y_lo, y_hi, y_t, y_in = _axis_taps(window.y0 * s, step, n, height)
    x_lo, x_hi, x_t, x_in = _axis_taps(window.x0 * s, step, n, width)
    c0 = int(x_lo.min())
    band = image[:, c0 : int(x_hi.max()) + 1]  # only the columns the crop reads
    rows = band[y_lo].astype(np.float32)
    rows += (band[y_hi] - rows) * y_t[:, None, None]
    left = rows[:, x_lo - c0]
    out = left + (rows[:, x_hi - c0] - left) * x_t[None, :, None]
    out *= (y_in[:, None] * x_in[None, :])[:, :, None]
    out += _TRUNC_EPS  # PIL truncates; keep exact integers (flat areas) from rounding down
    return out.astype(np.uint8)


def load_crop(path: str | Path, window: CropWindow) -> np.ndarray:
    """Decode a frame (at reduced scale where possible) and cut the window out of it.

    With simplejpeg (`jpeg.decoder()`), a JPEG is decoded from its bytes and cut with `crop_array`;
    anything simplejpeg refuses, and every frame with the PIL decoder, goes through PIL.
    """
    if jpeg.decoder() == "simplejpeg":
        try:
            data = jpeg.read_bytes(path)
        except OSError as exc:
            raise frame_error(path, exc) from None
        crop = crop_jpeg_bytes(data, window)
        if crop is not None:
            return crop
    img, scale = open_frame(path, window)
    return crop_image(img, window, scale)


def crop_jpeg_bytes(
    data: bytes, window: CropWindow, size: tuple[int, int] | None = None
) -> np.ndarray | None:
    """The crop of a JPEG held in memory through simplejpeg, or None when it cannot decode it (the
    caller then uses PIL, which accepts or refuses the file with its own message)."""
    size = size or jpeg.header_size(data)
    if size is None:
        return None
    scale = reduction(window)
    image = jpeg.decode_scaled(data, size, scale)
    if image is None:
        return None
    if scale > 1:  # the factor the decoder picked, as in _open_frame
        scale = round(size[0] / image.shape[1]) if image.shape[1] else 1
    return crop_array(image, window, 1.0 / scale)


def normalize(crops_uint8: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 with ImageNet mean/std."""
    x = crops_uint8.astype(np.float32) / 255.0
    x = (x - IMAGENET_MEAN) / IMAGENET_STD
    return np.moveaxis(x, -1, -3).copy()
