"""Pixels of the synthetic sequences: background, target and occluder textures (numpy/PIL, no per-pixel
Python). Every function is a pure function of its random generator: a change here changes the
generated frames, so bump `synthetic.GENERATOR_VERSION` with it."""

from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image, ImageDraw

TEXTURE_SIZE = 96  # side of the target / occluder texture before per-frame resizing


def smooth_noise(
    rng: np.random.Generator, width: int, height: int, cell: float, channels: int = 3
) -> np.ndarray:
    """Random values on a coarse grid, bicubically upsampled: smooth noise in [0, 255], float32."""
    grid_w, grid_h = max(2, int(width / cell) + 2), max(2, int(height / cell) + 2)
    coarse = rng.integers(0, 256, size=(grid_h, grid_w, channels), dtype=np.uint8)
    mode = "RGB" if channels == 3 else "L"
    image = Image.fromarray(coarse if channels == 3 else coarse[:, :, 0], mode).resize(
        (width, height), Image.Resampling.BICUBIC
    )
    out = np.asarray(image, dtype=np.float32)
    return out if channels == 3 else out[:, :, None]


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Muted multi-scale noise plus a colour gradient, larger than the frame so it can pan."""
    side = max(width, height)
    noise = 0.6 * smooth_noise(rng, width, height, side / rng.uniform(3, 6))
    noise += 0.4 * smooth_noise(rng, width, height, side / rng.uniform(12, 30))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = (xs * math.cos(theta) + ys * math.sin(theta)) / side
    tint_a, tint_b = rng.uniform(40, 200, size=3), rng.uniform(40, 200, size=3)
    gradient = tint_a + (tint_b - tint_a) * ((ramp - ramp.min()) / max(np.ptp(ramp), 1e-6))[:, :, None]
    image = 0.5 * noise + 0.5 * gradient
    gray = image.mean(axis=2, keepdims=True)
    image = gray + 0.45 * (image - gray)  # desaturate: the target stays the most colourful thing
    image += rng.normal(0.0, 1.5, size=(height, width, 1)).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def vivid(rng: np.random.Generator, count: int) -> np.ndarray:
    hue = rng.uniform(0, 1)
    colours = [
        colorsys.hsv_to_rgb((hue + k / count + rng.uniform(-0.05, 0.05)) % 1, rng.uniform(0.75, 1), 1)
        for k in range(count)
    ]
    return np.array(colours) * rng.uniform(200, 255)


def target_texture(rng: np.random.Generator) -> tuple[Image.Image, Image.Image, str]:
    """A saturated stripe/blob pattern with a dark rim inside an ellipse or rounded rectangle."""
    n = TEXTURE_SIZE
    palette = vivid(rng, 3)
    ys, xs = np.mgrid[0:n, 0:n].astype(np.float32) / n
    theta, freq = rng.uniform(0, np.pi), rng.uniform(2, 5)
    stripes = np.sin(2 * np.pi * freq * (xs * math.cos(theta) + ys * math.sin(theta))) > 0
    blobs = smooth_noise(rng, n, n, n / 4, channels=1)[:, :, 0] > 128
    index = stripes.astype(np.int64) + blobs.astype(np.int64)
    texture = palette[index] + rng.normal(0, 8, size=(n, n, 3))
    # Dark rim: separates the target from any background.
    scale = 4
    mask = Image.new("L", (n * scale, n * scale), 0)
    inner = Image.new("L", (n * scale, n * scale), 0)
    ellipse = bool(rng.integers(0, 2))
    rim = int(0.08 * n * scale)
    box, inner_box = (
        (0, 0, n * scale - 1, n * scale - 1),
        (rim, rim, n * scale - 1 - rim, n * scale - 1 - rim),
    )
    radius = int(rng.uniform(0.15, 0.35) * n * scale)
    for canvas, rect in ((mask, box), (inner, inner_box)):
        draw = ImageDraw.Draw(canvas)
        if ellipse:
            draw.ellipse(rect, fill=255)
        else:
            draw.rounded_rectangle(rect, radius=radius, fill=255)
    mask = mask.resize((n, n), Image.Resampling.BOX)
    inner_arr = np.asarray(inner.resize((n, n), Image.Resampling.BOX), dtype=np.float32)[:, :, None] / 255
    texture = texture * inner_arr + np.array([20.0, 20.0, 25.0]) * (1 - inner_arr)
    rgb = Image.fromarray(np.clip(texture, 0, 255).astype(np.uint8), "RGB")
    hue_name = colour_name(palette[0])
    return rgb, mask, f"{hue_name} {'round' if ellipse else 'boxy'}"


def colour_name(rgb: np.ndarray) -> str:
    hue = colorsys.rgb_to_hsv(*(np.asarray(rgb) / 255.0))[0] * 360
    names = ((20, "red"), (45, "orange"), (70, "yellow"), (160, "green"), (200, "cyan"), (260, "blue"))
    return next((name for limit, name in names if hue < limit), "purple" if hue < 330 else "red")


def occluder_texture(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """An opaque checker-and-noise panel in its own muted palette."""
    ys, xs = np.mgrid[0:height, 0:width]
    cell = max(4, int(min(width, height) / rng.uniform(3, 6)))
    checker = ((xs // cell + ys // cell) % 2).astype(np.float32)[:, :, None]
    colour_a, colour_b = rng.uniform(30, 220, size=3), rng.uniform(30, 220, size=3)
    panel = colour_a + (colour_b - colour_a) * checker
    panel += 0.25 * (smooth_noise(rng, width, height, max(4.0, cell / 2)) - 128)
    return Image.fromarray(np.clip(panel, 0, 255).astype(np.uint8), "RGB")


__all__ = [
    "TEXTURE_SIZE",
    "background",
    "colour_name",
    "occluder_texture",
    "smooth_noise",
    "target_texture",
    "vivid",
]
