"""Hostile and unusual JPEG frames against the region decoder (inputs/_jpegcrop.c), each built for real:
bad extents refused at the C boundary with one line naming them; crops equal to PIL's on every sampling,
frame size and window; PIL's pixel limit applied from the header, before any decoding, with PIL's own
refusal; absurd boxes refused by `crop_window` in one line."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from factories import ROOT
from hostile_jpeg import (
    PIL_SAMPLINGS,
    WRITER_SAMPLINGS,
    build_writer,
    flat_progressive_jpeg,
    pil_jpeg,
    random_windows,
    sampled_jpeg,
    textured,
)
from PIL import Image
from services import skip_or_fail_on_ci

from seqtrack_mlflow import cli
from seqtrack_mlflow.datasets.base import FrameError
from seqtrack_mlflow.evaluation.tracker import _Frame
from seqtrack_mlflow.inputs import jpeg
from seqtrack_mlflow.inputs.processing import (
    CropWindow,
    CropWindowError,
    crop_image,
    crop_jpeg_bytes,
    crop_window,
    load_crop,
    open_frame,
    reduction,
    window_extent,
)

needs_region = pytest.mark.skipif(not jpeg.AVAILABLE, reason=jpeg.BUILD_HINT)
NAN, INF = float("nan"), float("inf")


@pytest.fixture(autouse=True)
def default_decoder(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(jpeg.ENV_VAR, raising=False)
    monkeypatch.setattr(jpeg, "_chosen", None)
    yield
    monkeypatch.setattr(jpeg, "_chosen", None)


@pytest.fixture(scope="module")
def writer(tmp_path_factory: pytest.TempPathFactory) -> Path | str:
    """The libjpeg writer for the samplings PIL cannot write, or why it could not be built."""
    exe, why = build_writer(tmp_path_factory.mktemp("writer"))
    return exe or why


def pil_crop(data: bytes, window: CropWindow) -> np.ndarray:
    """The PIL path's crop (what load_crop cuts with the PIL decoder) of a JPEG held in memory."""
    img, scale = open_frame(io.BytesIO(data), window)
    return crop_image(img, window, scale)


def region_crop(data: bytes, window: CropWindow) -> np.ndarray:
    crop = crop_jpeg_bytes(data, window)
    assert crop is not None, f"the region decoder refused a valid frame ({window})"
    return crop


# -- bad arguments at the C boundary ------------------------------------------------------------------


@pytest.fixture(scope="module")
def large_frame() -> bytes:
    """4096x2048: the size at which a backwards extent segfaulted the -O3 build."""
    return pil_jpeg(np.tile(textured(256, 256, seed=2), (8, 16, 1)), "4:2:0", quality=75)


HOSTILE_EXTENTS = {
    "negative height": ((10.0, 200.0, 100.0, 10.0), "y1=10 is not greater than y0=200"),
    "negative width": ((300.0, 0.0, 100.0, 50.0), "x1=100 is not greater than x0=300"),
    "empty": ((5.0, 0.0, 5.0, 50.0), "x1=5 is not greater than x0=5"),
    "NaN x0": ((NAN, 0.0, 100.0, 100.0), "x0=nan is invalid"),
    "NaN y1": ((0.0, 0.0, 100.0, NAN), "y1=nan is invalid"),
    "infinite": ((0.0, -INF, 100.0, 100.0), "y0=-inf is invalid"),
    "huge": ((-1e300, -1e300, 1e300, 1e300), "x0=-1e+300 is invalid"),
    "past int": ((0.0, 0.0, 2.0**31, 100.0), "x1=2.14748e+09 is invalid"),
    "past 2^26": ((0.0, 0.0, 2.0**26 + 1, 100.0), "x1=6.71089e+07 is invalid"),
}


@needs_region
@pytest.mark.parametrize("scale", [1, 8])
@pytest.mark.parametrize("case", sorted(HOSTILE_EXTENTS))
def test_hostile_extent_is_refused_naming_it(large_frame: bytes, case: str, scale: int):
    extent, expected = HOSTILE_EXTENTS[case]
    out = np.full((64, 64, 3), 7, dtype=np.uint8)
    with pytest.raises(ValueError) as info:
        jpeg.crop(large_frame, scale, extent, out)
    # A bad argument is the caller's error, not a frame for PIL to try: never the fallback.
    assert not isinstance(info.value, jpeg._jpegcrop.DecodeError)
    message = str(info.value)
    assert "\n" not in message and message.startswith(expected), message
    assert (out == 7).all()  # nothing written


@needs_region
@pytest.mark.parametrize(
    "scale, n, out, expected",
    [
        (3, 16, np.empty((16, 16, 3), np.uint8), "scale=3 is invalid: use 1, 2, 4 or 8"),
        (1, 0, np.empty((0, 0, 3), np.uint8), "n=0 is invalid"),
        (1, 70000, np.empty((1, 1, 3), np.uint8), "n=70000 is invalid"),
        (1, 16, np.empty((8, 8, 3), np.uint8), "out holds 192 bytes: it must be a contiguous n x n x 3"),
    ],
)
def test_bad_sizes_are_refused_naming_them(large_frame: bytes, scale: int, n: int, out, expected: str):
    with pytest.raises(ValueError, match=f"^{expected}"):
        jpeg._jpegcrop.crop(large_frame, scale, 0.0, 0.0, 10.0, 10.0, n, out, -1)


@needs_region
def test_backwards_window_through_load_crop(tmp_path: Path, large_frame: bytes):
    path = tmp_path / "f.jpg"
    path.write_bytes(large_frame)
    with pytest.raises(ValueError, match="^x1=.* is not greater than x0="):
        load_crop(path, CropWindow(2000.0, 1000.0, -1500.0, 64))


# -- crops equal PIL's --------------------------------------------------------------------------------


@needs_region
@pytest.mark.parametrize("width", [640, 642, 338])  # 642, 338: 2 more than a multiple of 16
def test_crop_reading_only_the_first_or_last_column(width: int):
    """The issue's windows: a 200-px window whose crop reads only column 0, or only the last column."""
    data = pil_jpeg(textured(width, 360, seed=1), "4:2:0")
    for window in (CropWindow(-199.0, 100.0, 200.0, 128), CropWindow(width - 1.0, 100.0, 200.0, 128)):
        np.testing.assert_array_equal(region_crop(data, window), pil_crop(data, window), err_msg=str(window))


SAMPLINGS = [*PIL_SAMPLINGS, "grey", "4:2:0 progressive", "4:2:0 restarts", *WRITER_SAMPLINGS]


def frame_bytes(sampling: str, pixels: np.ndarray, writer) -> bytes:
    if sampling in WRITER_SAMPLINGS:
        if not isinstance(writer, Path):
            skip_or_fail_on_ci(f"PIL cannot write {sampling} JPEGs and no libjpeg writer was built: {writer}")
        return sampled_jpeg(writer, pixels, WRITER_SAMPLINGS[sampling])
    if sampling == "4:2:0 progressive":
        return pil_jpeg(pixels, "4:2:0", progressive=True)
    if sampling == "4:2:0 restarts":
        return pil_jpeg(pixels, "4:2:0", restart_marker_blocks=3)
    return pil_jpeg(pixels, sampling)


@needs_region
@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_region_crops_equal_pil_differential(sampling: str, writer):
    """Random frame sizes (tiny, odd, 16k + 2) and windows: the region decoder cuts PIL's crop to the bit."""
    rng = np.random.default_rng(SAMPLINGS.index(sampling))
    sizes = [(20, 20), (14, 238), (7, 5), (1, 1), (642, 40), (33, 18)]
    sizes += [(int(rng.integers(1, 400)), int(rng.integers(1, 300))) for _ in range(14)]
    mismatches, scales = [], set()
    for k, (width, height) in enumerate(sizes):
        data = frame_bytes(sampling, textured(width, height, seed=k), writer)
        for window in random_windows(rng, width, height, 12):
            scales.add(reduction(window))
            got, want = region_crop(data, window), pil_crop(data, window)
            if not np.array_equal(got, want):
                diff = np.abs(got.astype(int) - want)
                mismatches.append(f"{width}x{height} {window}: {(diff > 0).sum()} values, max {diff.max()}")
    assert not mismatches, f"{len(mismatches)} crops differ from PIL's: {mismatches[:5]}"
    assert scales == {1, 2, 4, 8}


@needs_region
@pytest.mark.parametrize("size", [(20, 20), (14, 238), (7, 7)])
def test_tiny_frames_decode_at_the_scale_pil_draft_picks(size: tuple[int, int]):
    """A 1/8 request on a 20x20 frame: PIL decodes 3x3 pixels at 1/8 (the PIL path used to map them
    at 1/7); on a 7x7 frame PIL's draft picks 1/4. Both paths cut from the same pixels."""
    width, height = size
    data = pil_jpeg(textured(width, height, seed=3), "4:2:0")
    window = CropWindow(-40.0, -40.0, 256.0, 16)  # shrinks 16x: asks for 1/8
    assert reduction(window) == 8
    img, scale = open_frame(io.BytesIO(data), window)
    assert img.size == (math.ceil(width * scale), math.ceil(height * scale))
    assert 1 / scale == (4 if min(size) < 8 else 8)
    np.testing.assert_array_equal(region_crop(data, window), crop_image(img, window, scale))


# -- PIL's pixel limit ------------------------------------------------------------------------------------


@needs_region
def test_pixel_limit_read_at_call_time_same_refusal_and_warning_as_pil(tmp_path: Path, monkeypatch):
    path = tmp_path / "f.jpg"
    path.write_bytes(pil_jpeg(textured(333, 250), "4:2:0"))  # 83,250 pixels
    window = crop_window((100.0, 80.0, 60.0, 40.0), 4.0, 64)
    out = np.empty((64, 64, 3), np.uint8)

    def both_decoders():
        results = []
        for decoder in ("region", "pil"):
            jpeg.set_decoder(decoder)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    results.append((load_crop(path, window).tobytes(), [str(w.message) for w in caught]))
                except FrameError as exc:
                    results.append((str(exc), [str(w.message) for w in caught]))
        jpeg.set_decoder(None)
        return results

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40_000)  # over twice the limit: PIL refuses
    assert not jpeg.crop(path.read_bytes(), *_scaled(window), out)  # refused from the header
    region, pil = both_decoders()
    assert region == pil and "exceeds limit of 80000 pixels" in region[0] and str(path) in region[0]

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)  # over the limit: PIL warns and decodes
    region, pil = both_decoders()
    assert region == pil and len(region[1]) == 1 and "exceeds limit of 50000 pixels" in region[1][0]

    for limit in (83_250, None):  # at the limit, or none: the region decoder cuts it, quietly
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        assert jpeg.crop(path.read_bytes(), *_scaled(window), out)
        region, pil = both_decoders()
        assert region == pil and region[1] == []


def _scaled(window: CropWindow) -> tuple[int, tuple[float, float, float, float]]:
    scale = reduction(window)
    return scale, window_extent(window, 1.0 / scale)


BOMB_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from PIL import Image
    from seqtrack_mlflow.datasets.base import FrameError
    from seqtrack_mlflow.inputs import jpeg
    from seqtrack_mlflow.inputs.processing import crop_window, load_crop

    path, mode = sys.argv[1], sys.argv[2]
    window = crop_window((8000, 8000, 400, 400), 4.0, 128)
    if mode == "no-limit":  # the decoder without PIL's limit: what the limit protects from
        Image.MAX_IMAGE_PIXELS = None
    # Peak RSS of this process's own memory. Not getrusage's ru_maxrss: Linux carries the parent's peak
    # (pytest's, with torch loaded) into a child through fork and exec, which would hide any growth.
    def peak():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    before, result = peak(), {}
    for decoder in ("region", "pil"):
        jpeg.set_decoder(decoder)
        try:
            load_crop(path, window)
            result[decoder] = "cut"
        except FrameError as exc:
            result[decoder] = str(exc)
        if mode == "no-limit":
            break
    result["grew_kb"] = peak() - before
    print(json.dumps(result))
    """
)


@needs_region
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="peak RSS is read from /proc (Linux)")
def test_progressive_bomb_refused_before_decoding(tmp_path: Path):
    """A valid 500 KB progressive 16000x16000 frame: PIL refuses it (DecompressionBombError); so does
    the region path, from the header, with the same message, peak memory near the baseline."""
    path = tmp_path / "bomb.jpg"
    path.write_bytes(flat_progressive_jpeg(16000, 16000))
    assert path.stat().st_size < 600_000

    def run(mode: str) -> dict:
        done = subprocess.run(
            [sys.executable, "-c", BOMB_SCRIPT, str(path), mode],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    limited = run("limit")
    assert "exceeds limit of 178956970 pixels" in limited["region"]
    assert limited["region"] == limited["pil"]
    assert limited["grew_kb"] < 40_000, limited
    with pytest.raises(FrameError) as info:  # the tracker's frames: refused from the header too
        _Frame(path)
    assert str(info.value) == limited["region"]
    # Without the limit the same crop costs hundreds of MB: the bound above is a real one.
    unlimited = run("no-limit")
    assert unlimited["region"] == "cut" and unlimited["grew_kb"] > 300_000, unlimited


# -- absurd boxes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "box",
    [(0, 0, 1e308, 10), (1e308, 0, 10, 10), (NAN, 0, 9, 9), (0, 0, INF, 1), (2e7, 0, 1, 1), (0, 0, 5e6, 5e6)],
)
def test_crop_window_refuses_absurd_boxes_in_one_line(box):
    with pytest.raises(CropWindowError) as info:
        crop_window(box, 4.0, 128)
    message = str(info.value)
    named = ", ".join(f"{v:g}" for v in box)
    assert "\n" not in message and message.startswith(f"box (x, y, w, h) = ({named}) with crop factor 4")
    assert "finite and within ±10,000,000 pixels" in message
    assert crop_window((9e6, -9e6, 100, 100), 4.0, 128).side == 400  # large but sane: cut


def test_tracker_first_box_1e308_is_one_line_exit_2(tmp_path: Path, capsys):
    import torch

    from seqtrack_mlflow.config import TrackerConfig, preset, replace
    from seqtrack_mlflow.evaluation.tracker import SeqTrackTracker
    from seqtrack_mlflow.model.factory import build_model

    torch.manual_seed(0)
    model = build_model(replace(preset("tiny")[0], template_size=32, search_size=32, encoder_depth=1))
    path = tmp_path / "00000001.jpg"
    path.write_bytes(pil_jpeg(textured(160, 120), "4:2:0"))

    @cli.user_facing
    def evaluate() -> None:
        SeqTrackTracker(model.eval(), TrackerConfig()).initialize(path, (0.0, 0.0, 1e308, 10.0))

    with pytest.raises(SystemExit) as info:
        evaluate()
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: box (x, y, w, h) = (0, 0, 1e+308, 10)"), err
