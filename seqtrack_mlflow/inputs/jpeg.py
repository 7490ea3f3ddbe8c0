"""Which JPEG decoder cuts crops: the region decoder (C extension `_jpegcrop`) or PIL.

A training sample needs three crops of three 1280x720 frames; decoding each frame whole and then
cutting the crop costs more than the frames' decode alone. The region decoder (`_jpegcrop.c`, built
against the system libjpeg-turbo at install) decodes only the rows and columns a crop reads, at the
same 1/2, 1/4 or 1/8 DCT scale as `processing.open_frame`, and resamples with PIL's exact bilinear
arithmetic in the same call: its crops are PIL's to the bit (tests/inputs/test_jpeg.py, every scale,
4:2:0, 4:2:2, 4:4:4 and greyscale frames, boxes across and beyond the border; tests/test_hostile_jpeg.py,
other samplings, tiny frames and hostile arguments). No maintained wheel
does this: simplejpeg scales but cannot crop, PyTurboJPEG's cropped decode needs TurboJPEG 3, which
no Debian 12 or Ubuntu 24.04 package ships.

The decoder of a process is fixed by `SEQTRACK_JPEG_DECODER`: `region` (the default when the
extension is built) or `pil`. Where the extension was not built (no C compiler or no libjpeg headers
at install) the process says so once on stderr, names the fix, and uses PIL: the same crops, slower.

Damage: a frame the region decoder refuses (not a JPEG, CMYK, any libjpeg warning, no end-of-image
marker, i.e. truncated, or more pixels than PIL's `Image.MAX_IMAGE_PIXELS`) goes to PIL, which decodes
it or raises `datasets.base.FrameError` (over the pixel limit: PIL's own warning, or its refusal).
Data below a crop's last row is never read, so damage there goes unnoticed where PIL would notice it
(the pixels used are intact); `-P verify_frames=true` checks every frame whole.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

INTERFACE_VERSION = 5  # of _jpegcrop.c; a build of another (a stale .so) is not used
try:
    from seqtrack_mlflow.inputs import _jpegcrop
except ImportError:  # not built: exercised in the tests by monkeypatching AVAILABLE
    _jpegcrop = None
if getattr(_jpegcrop, "INTERFACE_VERSION", None) != INTERFACE_VERSION:
    _jpegcrop = None

ENV_VAR = "SEQTRACK_JPEG_DECODER"
DECODERS = ("region", "pil")
AVAILABLE = _jpegcrop is not None
BUILD_HINT = (
    "the region JPEG decoder is not built (it needs a C compiler and libjpeg-turbo headers when the "
    "project is installed: apt install gcc libjpeg-dev, then pip install -e . again)"
)
_EOI = b"\xff\xd9"
_chosen: str | None = None


def decoder() -> str:
    """The decoder of this process: 'region' or 'pil' (see the module docstring)."""
    global _chosen
    if _chosen is None:
        wanted = os.environ.get(ENV_VAR, "").strip().lower() or "region"
        if wanted not in DECODERS:
            raise ValueError(f"{ENV_VAR}={wanted!r} is invalid: use one of {', '.join(DECODERS)}")
        if wanted == "region" and not AVAILABLE:
            print(f"info: {BUILD_HINT}: cropping frames from full PIL decodes, slower", file=sys.stderr)
            # Worker processes inherit the choice and stay quiet.
            os.environ[ENV_VAR] = wanted = "pil"
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


def crop(
    data: bytes, scale: int, extent: tuple[float, float, float, float], out: np.ndarray, flip: bool = False
) -> bool:
    """Write into `out` ((n, n, 3) uint8, C-contiguous) the crop of `extent` (x0, y0, x1, y1 in the
    coordinates of the frame decoded at 1/`scale`) as PIL's transform(EXTENT, BILINEAR) cuts it from
    the whole frame, mirrored left-right when `flip`. False when the region decoder is not built or
    refuses the data (the caller then uses PIL). A bad extent or `out` raises ValueError naming it.

    Frames over PIL's `Image.MAX_IMAGE_PIXELS` (read at each call) are refused from the header, before
    any decoding: PIL's path then warns, or refuses with DecompressionBombError, exactly as for PIL
    alone."""
    # No end-of-image marker: truncated. (0xFFD9 cannot occur inside entropy-coded data.)
    if _jpegcrop is None or _EOI not in data[-64:]:
        return False
    limit = Image.MAX_IMAGE_PIXELS
    max_pixels = -1 if limit is None else min(int(limit), 2**62)
    try:
        _jpegcrop.crop(data, scale, *extent, out.shape[0], out, max_pixels, flip)
    except _jpegcrop.DecodeError:
        return False
    return True


def read_bytes(path: str | Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


__all__ = ["AVAILABLE", "BUILD_HINT", "DECODERS", "ENV_VAR", "crop", "decoder", "read_bytes", "set_decoder"]
