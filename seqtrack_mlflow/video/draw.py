"""Boxes and captions drawn on frames with PIL: the one look shared by `track`'s tracked video and
preview and by `evaluate`'s result gifs (the tracker's box orange, the ground truth blue: two colours
that stay apart for colour-blind eyes)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

TRACKER = (255, 140, 0)  # orange
TRUTH = (30, 144, 255)  # blue
TEXT = (255, 255, 255)
BACKDROP = (0, 0, 0)

Box = Sequence[float]  # x, y, w, h in the image's pixels


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow's bundled scalable font (needs FreeType)
    except (AttributeError, ImportError, OSError, TypeError):
        return ImageFont.load_default()


def line_width(image: Image.Image) -> int:
    """Thick enough to see at any size: 2 px up to 480 px, then 1 px per 240 px of the shorter side."""
    return max(2, round(min(image.size) / 240))


def _font_size(image: Image.Image) -> int:
    return max(10, round(min(image.size) / 24))


def _label(
    draw: ImageDraw.ImageDraw, size: tuple[int, int], xy: tuple[float, float], text: str, font, colour
) -> None:
    """`text` on a filled backdrop whose top-left corner is `xy`, moved inside an image of `size`."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = 2
    w, h = right - left + 2 * pad, bottom - top + 2 * pad
    width, height = size
    x = min(max(0.0, xy[0]), max(0.0, width - w))
    y = min(max(0.0, xy[1]), max(0.0, height - h))
    draw.rectangle((x, y, x + w, y + h), fill=colour)
    draw.text((x + pad - left, y + pad - top), text, fill=TEXT if colour == BACKDROP else BACKDROP, font=font)


def annotate(
    image: Image.Image | np.ndarray,
    boxes: Sequence[tuple[Box, tuple[int, int, int]]],
    *,
    box_label: str = "",
    caption: str = "",
) -> Image.Image:
    """A copy of `image` with each (box, colour) outlined, `box_label` on a tag just above the first
    box (inside the image when there is no room above), and `caption` at the bottom-left corner."""
    img = Image.fromarray(image) if isinstance(image, np.ndarray) else image.copy()
    if img.mode != "RGB":
        img = img.convert("RGB")
    draw = ImageDraw.Draw(img)
    width = line_width(img)
    font = _font(_font_size(img))
    for box, colour in boxes:
        x, y, w, h = (float(v) for v in box)
        if not (np.isfinite([x, y, w, h]).all() and w > 0 and h > 0):
            continue  # no box to draw (a ground truth frame with the target out of view)
        draw.rectangle((x, y, x + w - 1, y + h - 1), outline=colour, width=width)
    if box_label and boxes:
        (x, y, _, _), colour = boxes[0]
        tag_height = draw.textbbox((0, 0), box_label, font=font)[3] + 4
        _label(draw, img.size, (float(x), float(y) - tag_height - width), box_label, font, colour)
    if caption:
        _label(draw, img.size, (0, img.height), caption, font, BACKDROP)  # moved up to fit: bottom-left
    return img


def fit(image: Image.Image | np.ndarray, max_side: int) -> tuple[Image.Image, float]:
    """`image` shrunk so that its longer side is at most `max_side` pixels, and the scale applied."""
    img = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    scale = min(1.0, max_side / max(img.size))
    if scale < 1.0:
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return img, scale


def scaled(box: Box, scale: float) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in box)
    return x * scale, y * scale, w * scale, h * scale


__all__ = ["TRACKER", "TRUTH", "annotate", "fit", "line_width", "scaled"]
