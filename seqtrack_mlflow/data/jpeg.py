"""JPEG frame decoding for crops: simplejpeg (libjpeg-turbo bundled in its wheel) with PIL as the fallback.

Both decoders run libjpeg-turbo with the same settings (accurate integer DCT, fancy upsampling) and, for
a crop that shrinks the frame 2x or more, the same DCT-domain scale (1/2, 1/4 or 1/8, the rule of
`processing.open_frame`), so they return the same pixels. simplejpeg decodes straight from the file's
bytes into a numpy array (no PIL image object, no RGB -> RGBX -> RGB copies), and
`processing.crop_array` then cuts, zero-pads and resizes with the same bilinear sampling as PIL's
`transform` (within +-1 level of rounding). No maintained wheel decodes only a region of a JPEG:
simplejpeg scales but cannot crop; PyTurboJPEG needs a system libturbojpeg, and Debian 12 ships 2.1.5,
whose API only crops by lossless transcoding, which costs as much as a full decode (measured); the
TurboJPEG 3 region decode (`tj3SetCroppingRegion`) is in no Debian 12 package.

Which decoder runs is fixed per process by `SEQTRACK_JPEG_DECODER`: `pil` (the default) or `simplejpeg`
(when it does not import: PIL, with one info line on stderr). PIL stays the default because the
simplejpeg path measured slower end to end (CPU time per training sample, 1280x720 frames of 96 and 148
KB, 256-px crops: 0.45x and 0.65x of decode-only against PIL's 0.53x and 0.76x): its decode is ~25%
faster but the numpy crop costs more than PIL's affine pass for large search crops. Crops, and so
training samples, are the same whichever worker computes them, but a run resumed with the other
decoder is not bit-identical (crops differ by +-1 level in rare pixels).

A frame simplejpeg refuses (not a JPEG, CMYK, a libjpeg warning such as a corrupt or truncated stream)
is handed to PIL, so both decoders accept and refuse the same files: a file PIL cannot decode raises
`lasot.FrameError`, one line naming it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

ENV_VAR = "SEQTRACK_JPEG_DECODER"
DECODERS = ("simplejpeg", "pil")

try:
    import simplejpeg as _simplejpeg
except ImportError:  # pragma: no cover - exercised by monkeypatching AVAILABLE in the tests
    _simplejpeg = None

AVAILABLE = _simplejpeg is not None
_chosen: str | None = None
_announced = False


def _info(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def decoder() -> str:
    """The decoder of this process: 'simplejpeg' or 'pil' (chosen once, see the module docstring)."""
    global _chosen, _announced
    if _chosen is None:
        wanted = os.environ.get(ENV_VAR, "").strip().lower() or "pil"
        if wanted not in DECODERS:
            raise ValueError(f"{ENV_VAR}={wanted!r} is invalid: use one of {', '.join(DECODERS)}")
        if wanted == "simplejpeg" and not AVAILABLE:
            if not _announced:
                _announced = True
                _info(
                    "info: simplejpeg is not installed, decoding JPEG frames with PIL (slower; crops "
                    "differ by rounding, so a resume is not bit-identical): pip install simplejpeg"
                )
            wanted = "pil"
        _chosen = wanted
    return _chosen


def set_decoder(name: str | None) -> str:
    """Choose the decoder for this process and the worker processes it starts (None: the default)."""
    global _chosen
    if name is None:
        os.environ.pop(ENV_VAR, None)
    else:
        if name not in DECODERS:
            raise ValueError(f"decoder {name!r} is invalid: use one of {', '.join(DECODERS)}")
        os.environ[ENV_VAR] = name
    _chosen = None
    return decoder()


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a JPEG held in memory, or None when simplejpeg cannot read its header."""
    if _simplejpeg is None or not is_jpeg(data):
        return None
    try:
        height, width, _, _ = _simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    return int(width), int(height)


def decode_scaled(data: bytes, size: tuple[int, int], scale: int) -> np.ndarray | None:
    """RGB (h, w, 3) uint8 of a JPEG at 1/`scale` (1, 2, 4 or 8), or None when simplejpeg refuses it."""
    if _simplejpeg is None:
        return None
    width, height = size
    try:
        return _simplejpeg.decode_jpeg(
            data,
            colorspace="RGB",
            # The smallest libjpeg-turbo scale (M/8) at least this large is exactly 1/scale.
            min_width=max(1, width // scale) if scale > 1 else 0,
            min_height=max(1, height // scale) if scale > 1 else 0,
        )
    except ValueError:
        return None


def read_bytes(path: str | Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


__all__ = [
    "AVAILABLE",
    "DECODERS",
    "ENV_VAR",
    "decode_scaled",
    "decoder",
    "header_size",
    "is_jpeg",
    "read_bytes",
    "set_decoder",
]
