"""Seeded, bounded fuzz of a `_jpegcrop` build (run by tests/test_jpegcrop_sanitizer.py on a build with
AddressSanitizer and UBSan, in its own process).

- Differential: textured frames of random size (1x1 up, odd, 16k + 2) in every sampling, random windows
  (edge columns and rows, every DCT scale, fractional and tiny sides, far outside the frame), both
  lerp kernels, flipped or not: each crop must equal PIL's path's (`processing.crop_image` of
  `processing.open_frame`) to the bit.
- Hostile arguments: backwards, empty, NaN, infinite and out-of-range extents, bad sizes: each must
  raise ValueError (not DecodeError: a bad argument is no frame for PIL to try).
- Mutation: bit flips, byte overwrites, truncations, deleted and repeated chunks of real JPEGs
  (headers more often than entropy data): each call must return a crop or raise ValueError/OSError.

Exit 0 and a JSON summary on stdout when all held; else one line per failure on stderr, exit 1. A
sanitizer finding aborts the process with its report (the test reads it from stderr).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from hostile_jpeg import (
    PIL_SAMPLINGS,
    WRITER_SAMPLINGS,
    flat_progressive_jpeg,
    pil_jpeg,
    random_windows,
    sampled_jpeg,
    textured,
)

from seqtrack_mlflow.inputs.processing import CropWindow, crop_image, open_frame, reduction, window_extent

NAN, INF = float("nan"), float("inf")
MUTATION_MAX_PIXELS = 4_000_000  # a mutated header may claim any size: keep each decode small


def load_module(path: Path):
    spec = importlib.util.spec_from_file_location("_jpegcrop", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def frame(rng: np.random.Generator, writer: Path | None, seed: int) -> tuple[str, bytes, int, int]:
    """A random valid frame: (its sampling, its bytes, width, height)."""
    if rng.random() < 0.2:
        width, height = int(rng.integers(1, 24)), int(rng.integers(1, 24))
    else:
        width, height = int(rng.integers(1, 360)), int(rng.integers(1, 260))
        if rng.random() < 0.2:
            width = 16 * int(rng.integers(1, 20)) + 2
    pixels = textured(width, height, seed)
    kinds = [*PIL_SAMPLINGS, "grey", "progressive", "restarts"] + ([*WRITER_SAMPLINGS] if writer else [])
    kind = kinds[int(rng.integers(len(kinds)))]
    quality = int(rng.integers(30, 100))
    if kind in WRITER_SAMPLINGS:
        data = sampled_jpeg(writer, pixels, WRITER_SAMPLINGS[kind], quality, bool(rng.random() < 0.3))
    elif kind == "progressive":
        data = pil_jpeg(pixels, "4:2:0", quality, progressive=True)
    elif kind == "restarts":
        data = pil_jpeg(pixels, "4:2:2", quality, restart_marker_blocks=int(rng.integers(1, 9)))
    else:
        data = pil_jpeg(pixels, kind, quality)
    return kind, data, width, height


def odd_windows(rng: np.random.Generator, width: int, height: int) -> list[CropWindow]:
    """Valid but unusual windows: fractional corners, tiny sides, far outside, huge sides."""
    x, y = float(rng.uniform(-5, width)), float(rng.uniform(-5, height))
    return [
        CropWindow(x, y, float(rng.uniform(0.01, 3)), 8),
        CropWindow(x + 2.5, y + 2.5, 1e-9, 4),
        CropWindow(-3e7, 5e6, 1000.0, 16),
        CropWindow(-2e6, -2e6, 5e6, 32),
        CropWindow(float(width) - 0.5, float(height) - 0.5, 0.75, 3),
    ]


HOSTILE = [
    ((10.0, 200.0, 100.0, 10.0), 64),
    ((300.0, 0.0, 100.0, 50.0), 64),
    ((5.0, 5.0, 5.0, 50.0), 8),
    ((NAN, 0.0, 10.0, 10.0), 8),
    ((0.0, NAN, 10.0, 10.0), 8),
    ((0.0, 0.0, NAN, 10.0), 8),
    ((0.0, 0.0, 10.0, NAN), 8),
    ((-INF, 0.0, 10.0, 10.0), 8),
    ((0.0, 0.0, INF, 10.0), 8),
    ((-1e300, -1e300, 1e300, 1e300), 8),
    ((0.0, 0.0, 2.0**26 + 1, 10.0), 8),
    ((-(2.0**31), 0.0, 0.0, 10.0), 8),
    ((0.0, 0.0, 10.0, 10.0), 0),
    ((0.0, 0.0, 10.0, 10.0), -5),
    ((0.0, 0.0, 10.0, 10.0), 70000),
]


def hostile_calls(mod, data: bytes, rng: np.random.Generator, failures: list[str]) -> int:
    count = 0
    for extent, n in HOSTILE:
        size = n if 0 < n <= 4096 else 1
        out = np.zeros((size, size, 3), np.uint8)
        scale = int(rng.choice([1, 2, 4, 8]))
        try:
            mod.crop(data, scale, *extent, n, out, -1, bool(rng.random() < 0.5))
            failures.append(f"hostile extent {extent} n={n} scale={scale}: accepted")
        except mod.DecodeError as exc:
            failures.append(f"hostile extent {extent} n={n}: DecodeError ({exc}), not a plain ValueError")
        except ValueError:
            pass
        count += 1
    for scale in (0, 3, -8, 16):
        try:
            mod.crop(data, scale, 0.0, 0.0, 8.0, 8.0, 4, np.zeros((4, 4, 3), np.uint8), -1)
            failures.append(f"scale={scale}: accepted")
        except ValueError:
            pass
        count += 1
    try:
        mod.crop(data, 1, 0.0, 0.0, 8.0, 8.0, 4, np.zeros((3, 4, 3), np.uint8), -1)
        failures.append("an out buffer of the wrong size: accepted")
    except ValueError:
        pass
    return count + 1


def differential(mod, rng: np.random.Generator, writer: Path | None, frames: int, failures: list) -> dict:
    compared = hostile = 0
    kernels = mod.kernels()
    # Hostile extents on a frame larger than the decoder's row block too.
    large = pil_jpeg(textured(1280, 720, seed=1), "4:2:0")
    for kernel in kernels:
        mod.set_kernel(kernel)
        hostile += hostile_calls(mod, large, rng, failures)
    for k in range(frames):
        mod.set_kernel(kernels[k % len(kernels)])
        kind, data, width, height = frame(rng, writer, k)
        windows = random_windows(rng, width, height, 8) + odd_windows(rng, width, height)
        for window in windows:
            scale = reduction(window)
            out = np.empty((window.out_size, window.out_size, 3), np.uint8)
            flip = bool(rng.random() < 0.5)
            try:
                mod.crop(data, scale, *window_extent(window, 1.0 / scale), window.out_size, out, -1, flip)
            except ValueError as exc:
                failures.append(f"{kind} {width}x{height} {window}: refused ({exc})")
                continue
            img, decode_scale = open_frame(io.BytesIO(data), window)
            want = crop_image(img, window, decode_scale)
            if flip:
                want = want[:, ::-1]
            if not np.array_equal(out, want):
                diff = np.abs(out.astype(int) - want)
                where = f"{kind} {width}x{height} {window} flip={flip}"
                failures.append(f"{where}: {(diff > 0).sum()} values differ, max {diff.max()}")
            compared += 1
        hostile += hostile_calls(mod, data, rng, failures)
    mod.set_kernel(kernels[0])
    return {"frames": frames, "crops_compared": compared, "hostile_calls": hostile}


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        # Headers (markers, tables, frame size, sampling factors) sit in the first few hundred bytes.
        head = min(len(buf), 700)
        where = int(rng.integers(head)) if rng.random() < 0.6 else int(rng.integers(len(buf)))
        op = rng.random()
        if op < 0.4:
            buf[where] ^= 1 << int(rng.integers(8))
        elif op < 0.65:
            buf[where] = int(rng.choice([0x00, 0xFF, 0x7F, 0x80, 0x01, int(rng.integers(256))]))
        elif op < 0.75:
            del buf[where:]
        elif op < 0.87:
            del buf[where : where + int(rng.integers(1, 64))]
        else:
            chunk = buf[where : where + int(rng.integers(1, 64))]
            buf[where:where] = chunk
        if not buf:
            break
    return bytes(buf)


def mutation(mod, rng: np.random.Generator, writer: Path | None, count: int, failures: list[str]) -> dict:
    seeds = [frame(rng, writer, 1000 + i)[1] for i in range(24)]
    seeds.append(flat_progressive_jpeg(1500, 1100))  # the hand-made progressive file's headers too
    cut = refused = 0
    for i in range(count):
        data = mutate(seeds[i % len(seeds)], rng)
        side = float(math.exp(rng.uniform(0, 6)))
        x0, y0 = float(rng.uniform(-side, 300)), float(rng.uniform(-side, 200))
        window = CropWindow(x0, y0, side, int(rng.choice([8, 32])))
        scale = reduction(window)
        out = np.empty((window.out_size, window.out_size, 3), np.uint8)
        try:
            extent = window_extent(window, 1.0 / scale)
            mod.crop(data, scale, *extent, window.out_size, out, MUTATION_MAX_PIXELS, bool(i % 2))
            cut += 1
        except (ValueError, OSError):
            refused += 1
        except Exception as exc:  # noqa: BLE001 - anything else is the finding
            failures.append(f"mutated file #{i}: {type(exc).__name__}: {exc}")
    return {"mutated": count, "cut": cut, "refused": refused}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", type=Path, required=True, help="the _jpegcrop build to fuzz")
    parser.add_argument("--writer", type=Path, help="tests/hostile_jpeg.py's libjpeg writer (more samplings)")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--frames", type=int, default=1200, help="frames of the differential fuzz")
    parser.add_argument("--mutations", type=int, default=120_000, help="mutated files")
    args = parser.parse_args()
    mod = load_module(args.module)
    rng = np.random.default_rng(args.seed)
    failures: list[str] = []
    start = time.monotonic()
    summary = differential(mod, rng, args.writer, args.frames, failures)
    summary |= mutation(mod, rng, args.writer, args.mutations, failures)
    summary["seconds"] = round(time.monotonic() - start, 1)
    for line in failures[:50]:
        print(line, file=sys.stderr)
    print(json.dumps(summary))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
