"""The region JPEG decoder against PIL's decode-then-crop, the PIL fallback, and damaged frames."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seqtrack_mlflow.datasets.base import FrameError
from seqtrack_mlflow.evaluation.tracker import _Frame
from seqtrack_mlflow.inputs import jpeg
from seqtrack_mlflow.inputs.processing import crop_image, crop_window, load_crop, open_frame, reduction

needs_region = pytest.mark.skipif(not jpeg.AVAILABLE, reason=jpeg.BUILD_HINT)
# The resampler's kernels this CPU runs (AVX2 and plain C): each must cut PIL's crops.
KERNELS = jpeg._jpegcrop.kernels() if jpeg.AVAILABLE else ("none",)

WIDTH, HEIGHT = 333, 250  # not a multiple of the 16-px MCU, so the edge blocks are partial
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


@pytest.fixture(autouse=True)
def default_decoder(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(jpeg.ENV_VAR, raising=False)
    monkeypatch.setattr(jpeg, "_chosen", None)
    yield
    monkeypatch.setattr(jpeg, "_chosen", None)


def _frame(path: Path, seed: int = 0, mode: str = "RGB", subsampling: str = "4:2:0") -> Path:
    """A textured frame: smooth gradients plus noise, like a natural image's JPEG."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    base = np.stack([xx / WIDTH * 200, yy / HEIGHT * 200, (xx + yy) / (WIDTH + HEIGHT) * 255], axis=-1)
    pixels = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    image.save(path, "JPEG", quality=90, subsampling=SUBSAMPLING[subsampling])
    return path


def _pil_crop(path: Path, window) -> np.ndarray:
    img, scale = open_frame(path, window)
    return crop_image(img, window, scale)


def test_ci_builds_the_region_decoder():
    """CI installs with a compiler and libjpeg headers: the fast path must be there, not skipped."""
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes") and not jpeg.AVAILABLE:
        pytest.skip(jpeg.BUILD_HINT)
    assert jpeg.AVAILABLE, jpeg.BUILD_HINT
    assert jpeg.decoder() == "region"  # the default


@pytest.fixture
def kernel(request: pytest.FixtureRequest):
    jpeg._jpegcrop.set_kernel(request.param)
    yield request.param
    jpeg._jpegcrop.set_kernel(KERNELS[0])


@needs_region
@pytest.mark.parametrize("kernel", KERNELS, indirect=True)
@pytest.mark.parametrize(
    "mode,subsampling", [("RGB", "4:2:0"), ("RGB", "4:2:2"), ("RGB", "4:4:4"), ("L", "4:4:4")]
)
def test_crops_equal_pil_on_random_boxes(tmp_path: Path, mode: str, subsampling: str, kernel: str):
    path = _frame(tmp_path / "f.jpg", mode=mode, subsampling=subsampling)
    rng = np.random.default_rng(0)
    scales = set()
    for _ in range(120):
        w, h = np.exp(rng.uniform(np.log(2), np.log(300), 2))
        # Centres from well outside the frame to well inside: boxes at and beyond the border.
        x = rng.uniform(-w - 40, WIDTH + 40)
        y = rng.uniform(-h - 40, HEIGHT + 40)
        out = int(rng.choice([16, 64, 128, 256]))
        window = crop_window((x, y, w, h), float(rng.choice([2.0, 4.0, 5.0])), out)
        scales.add(reduction(window))
        flip = bool(rng.random() < 0.5)  # mirrored by the decoder as it writes the crop
        new = load_crop(path, window, flip=flip)
        assert new.shape == (out, out, 3)
        want = _pil_crop(path, window)
        np.testing.assert_array_equal(new, want[:, ::-1] if flip else want, err_msg=str(window))
    assert scales == {1, 2, 4, 8}  # every DCT scale was exercised


@needs_region
def test_zero_padding_outside_the_frame(tmp_path: Path):
    path = _frame(tmp_path / "f.jpg")
    window = crop_window((-200.0, -200.0, 50.0, 50.0), 2.0, 32)  # wholly outside
    assert not load_crop(path, window).any()
    corner = crop_window((-10.0, -10.0, 40.0, 40.0), 2.0, 64)  # straddles the corner
    new = load_crop(path, corner)
    assert not new[:8, :8].any() and new[-8:, -8:].any()
    np.testing.assert_array_equal(new, _pil_crop(path, corner))


def test_fallback_to_pil_when_not_built(tmp_path: Path, monkeypatch, capsys):
    path = _frame(tmp_path / "f.jpg")
    window = crop_window((100.0, 80.0, 60.0, 40.0), 4.0, 64)
    monkeypatch.setattr(jpeg, "AVAILABLE", False)
    monkeypatch.setattr(jpeg, "_jpegcrop", None)
    assert jpeg.decoder() == "pil"
    assert os.environ[jpeg.ENV_VAR] == "pil"  # worker processes inherit the choice, quietly
    crop = load_crop(path, window)
    frame = _Frame(path)
    assert frame._jpeg is None and frame.size == (WIDTH, HEIGHT)
    np.testing.assert_array_equal(frame.crop(window), crop)
    np.testing.assert_array_equal(crop, _pil_crop(path, window))
    jpeg._chosen = None  # asked again (another loader, or a worker): no second line
    assert jpeg.decoder() == "pil"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("info: the region JPEG decoder is not built")
    assert "apt install gcc libjpeg-dev" in err[0] and "pip install -e ." in err[0]


@needs_region
def test_decoder_chosen_by_environment(monkeypatch, capsys):
    assert jpeg.decoder() == "region"  # the default
    monkeypatch.setenv(jpeg.ENV_VAR, "pil")
    jpeg._chosen = None
    assert jpeg.decoder() == "pil"
    assert jpeg.set_decoder("region") == "region"
    assert capsys.readouterr().err == ""  # a deliberate choice is not announced
    with pytest.raises(ValueError, match="invalid"):
        jpeg.set_decoder("turbo")
    jpeg.set_decoder(None)


@needs_region
def test_tracker_frame_uses_the_region_decoder(tmp_path: Path):
    path = _frame(tmp_path / "f.jpg")
    frame = _Frame(path)
    assert frame._jpeg is not None and frame.size == (WIDTH, HEIGHT)
    window = crop_window((150.0, 100.0, 30.0, 30.0), 4.0, 128)
    np.testing.assert_array_equal(frame.crop(window), _pil_crop(path, window))


@pytest.mark.parametrize("damage", ["truncated", "truncated_below_crop", "garbage", "missing"])
def test_corrupt_jpeg_raises_frame_error_naming_the_file(tmp_path: Path, damage: str):
    """Truncated below the crop too: the region decoder never reads those rows, the missing
    end-of-image marker still sends the frame to PIL, which refuses it."""
    path = _frame(tmp_path / "00000001.jpg")
    data = path.read_bytes()
    window = crop_window((100.0, 80.0, 60.0, 40.0), 4.0, 64)
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "truncated_below_crop":
        window = crop_window((100.0, 4.0, 20.0, 8.0), 2.0, 32)  # the top rows only
        path.write_bytes(data[: len(data) * 9 // 10])
    elif damage == "garbage":
        path.write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 4)
    else:
        path.unlink()
    for load in (lambda: load_crop(path, window), lambda: _Frame(path).crop(window)):
        with pytest.raises(FrameError) as info:
            load()
        message = str(info.value)
        assert len(message.splitlines()) == 1
        assert str(path) in message
