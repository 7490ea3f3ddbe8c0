"""JPEG frames built for real for the region decoder's tests (inputs/_jpegcrop.c): textured frames in any
chroma sampling, a valid progressive frame of any size in ~1 bit per 8x8 block (a decompression bomb),
the C toolchain probes and the sanitizer build.

PIL writes 4:4:4, 4:2:2 and 4:2:0 only ("4:1:1" is written as 4:2:0); the other samplings (4:4:0,
4:1:1, h4v2, h3v1) come from `WRITER_C`, a small libjpeg program compiled by `build_writer`.
"""

from __future__ import annotations

import io
import math
import shutil
import struct
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
from PIL import Image

from seqtrack_mlflow.inputs.processing import CropWindow

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "seqtrack_mlflow" / "inputs" / "_jpegcrop.c"

# PIL's `subsampling=` for the samplings it writes; grey frames are mode L.
PIL_SAMPLINGS = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}
# (luma h, luma v) with 1x1 chroma, for the writer: the samplings PIL cannot write.
WRITER_SAMPLINGS = {"4:4:0 (h1v2)": (1, 2), "4:1:1 (h4v1)": (4, 1), "h4v2": (4, 2), "h3v1": (3, 1)}

WRITER_C = r"""
/* stdin: raw RGB rows; argv: width height quality progressive luma_h luma_v; stdout: the JPEG. */
#include <stdio.h>
#include <stdlib.h>
#include <jpeglib.h>
int main(int argc, char **argv) {
    if (argc != 7) return 2;
    int w = atoi(argv[1]), h = atoi(argv[2]);
    size_t size = (size_t)w * h * 3;
    unsigned char *rgb = malloc(size);
    if (rgb == NULL || fread(rgb, 1, size, stdin) != size) return 2;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, stdout);
    c.image_width = w;
    c.image_height = h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, atoi(argv[3]), TRUE);
    if (atoi(argv[4])) jpeg_simple_progression(&c);
    c.comp_info[0].h_samp_factor = atoi(argv[5]);
    c.comp_info[0].v_samp_factor = atoi(argv[6]);
    for (int i = 1; i < 3; i++) c.comp_info[i].h_samp_factor = c.comp_info[i].v_samp_factor = 1;
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = rgb + (size_t)c.next_scanline * w * 3;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return 0;
}
"""


def textured(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus noise, like a natural image's JPEG: uint8 (height, width, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width * 200, yy / height * 200, (xx + yy) / (width + height) * 255], axis=-1)
    return np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)


def pil_jpeg(pixels: np.ndarray, sampling: str = "4:2:0", quality: int = 90, **options) -> bytes:
    """`pixels` as PIL writes them: `sampling` one of PIL_SAMPLINGS or "grey"."""
    buffer = io.BytesIO()
    if sampling == "grey":
        Image.fromarray(pixels).convert("L").save(buffer, "JPEG", quality=quality, **options)
    else:
        image = Image.fromarray(pixels)
        image.save(buffer, "JPEG", quality=quality, subsampling=PIL_SAMPLINGS[sampling], **options)
    return buffer.getvalue()


def random_windows(rng: np.random.Generator, width: int, height: int, count: int) -> list[CropWindow]:
    """Windows as crop_window cuts them (whole pixels): anywhere from outside to inside the frame, of
    any shrink (every DCT scale), and windows reading only the first or only the last column or row."""
    windows = []
    for i in range(count):
        side = float(max(1, round(math.exp(rng.uniform(0, math.log(4 * max(width, height) + 8))))))
        x0 = float(round(rng.uniform(-side, width)))
        y0 = float(round(rng.uniform(-side, height)))
        kind = i % 4
        if kind == 1:  # its right edge just inside column 0
            x0 = -side + float(rng.integers(1, 3))
        elif kind == 2:  # its left edge in the last column
            x0 = width - float(rng.integers(1, 3))
        elif kind == 3:  # the same along y
            y0 = -side + 1.0 if rng.random() < 0.5 else height - 1.0
        windows.append(CropWindow(x0, y0, side, int(rng.choice([16, 32, 64, 128]))))
    return windows


def compile_c(source: Path, output: Path, *flags: str) -> str | None:
    """Compile `source` with `cc`, linking libjpeg; None on success, else why it failed (one line)."""
    cc = shutil.which("cc")
    if cc is None:
        return "no C compiler (cc) on PATH"
    args = [cc, *flags, str(source), "-ljpeg", "-o", str(output)]
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return f"cc failed ({last[:200]}): install gcc and libjpeg-dev"
    return None


def build_writer(folder: Path) -> tuple[Path | None, str | None]:
    """The WRITER_C program in `folder`, or (None, why not)."""
    source, exe = folder / "jpeg_writer.c", folder / "jpeg_writer"
    source.write_text(WRITER_C)
    why = compile_c(source, exe, "-O1")
    return (None, why) if why else (exe, None)


def sampled_jpeg(
    writer: Path, pixels: np.ndarray, luma: tuple[int, int], quality: int = 90, progressive: bool = False
) -> bytes:
    """`pixels` with luma sampling factors `luma` (h, v) and 1x1 chroma, written by libjpeg."""
    height, width, _ = pixels.shape
    args = [str(writer), str(width), str(height), str(quality), str(int(progressive)), *map(str, luma)]
    return subprocess.run(args, input=pixels.tobytes(), capture_output=True, check=True).stdout


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">HH", 0xFF00 | marker, len(payload) + 2) + payload


def flat_progressive_jpeg(width: int, height: int) -> bytes:
    """A valid progressive greyscale JPEG of a flat grey frame: one DC scan in which every block's DC
    difference 0 is coded in one bit (a one-symbol Huffman table), so 16000x16000 takes ~500 KB while
    libjpeg holds every block's coefficients to decode it (~2 bytes a pixel)."""
    blocks = -(-width // 8) * -(-height // 8)
    dqt = _segment(0xDB, b"\x00" + bytes([1] * 64))
    sof2 = _segment(0xC2, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
    dht = _segment(0xC4, b"\x00" + bytes([1] + [0] * 15) + b"\x00")  # DC table 0: symbol 0, code "0"
    sos = _segment(0xDA, b"\x01\x01\x00\x00\x00\x00")  # component 1, table 0, Ss = Se = Ah = Al = 0
    full, rest = divmod(blocks, 8)
    data = bytes(full) + (bytes([(1 << (8 - rest)) - 1]) if rest else b"")  # pad with 1 bits
    return b"\xff\xd8" + dqt + sof2 + dht + sos + data + b"\xff\xd9"


def sanitizer_build(folder: Path) -> tuple[Path | None, dict[str, str], str | None]:
    """_jpegcrop.c built with AddressSanitizer and UBSan (float-cast-overflow too: GCC's
    -fsanitize=undefined leaves it out) into `folder`: (module path, the environment a Python host
    needs to load it, None), or (None, {}, why not)."""
    cc = shutil.which("cc")
    if cc is None:
        return None, {}, "no C compiler (cc) on PATH"
    found = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True)
    libasan = found.stdout.strip()
    if not Path(libasan).is_file():
        return None, {}, f"cc has no AddressSanitizer runtime ({libasan!r}): install gcc"
    module = folder / f"_jpegcrop{sysconfig.get_config_var('EXT_SUFFIX')}"
    flags = [
        "-fsanitize=address,undefined,float-cast-overflow",
        "-fno-sanitize-recover=all",
        "-fno-omit-frame-pointer",
        "-g",
        "-O1",
        "-ffp-contract=off",
        "-shared",
        "-fPIC",
        f"-I{sysconfig.get_paths()['include']}",
    ]
    why = compile_c(SOURCE, module, *flags)
    if why:
        return None, {}, why
    env = {
        "LD_PRELOAD": libasan,  # the ASan runtime must come first in a host not built with it
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:exitcode=86",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=87",
    }
    return module, env, None
