"""The simplejpeg crop path against PIL's, the PIL fallback, and bad frames through the new decoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seqtrack_mlflow.data import jpeg
from seqtrack_mlflow.data.lasot import FrameError
from seqtrack_mlflow.data.processing import crop_image, crop_window, load_crop, open_frame, reduction
from seqtrack_mlflow.evaluation.tracker import _Frame

pytestmark = pytest.mark.skipif(not jpeg.AVAILABLE, reason="simplejpeg is not installed")

WIDTH, HEIGHT = 333, 250  # not a multiple of the 16-px MCU, so the edge blocks are partial


@pytest.fixture(autouse=True)
def simplejpeg_decoder(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(jpeg.ENV_VAR, "simplejpeg")
    monkeypatch.setattr(jpeg, "_chosen", None)
    yield
    monkeypatch.setattr(jpeg, "_chosen", None)


def _frame(path: Path, seed: int = 0, mode: str = "RGB") -> Path:
    """A textured frame: smooth gradients plus noise, like a natural image's JPEG."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    base = np.stack([xx / WIDTH * 200, yy / HEIGHT * 200, (xx + yy) / (WIDTH + HEIGHT) * 255], axis=-1)
    pixels = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).convert(mode).save(path, "JPEG", quality=90)
    return path


def _pil_crop(path: Path, window) -> np.ndarray:
    img, scale = open_frame(path, window)
    return crop_image(img, window, scale)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_crops_equal_pil_on_random_boxes(tmp_path: Path, mode: str):
    path = _frame(tmp_path / "f.jpg", mode=mode)
    rng = np.random.default_rng(0)
    scales = set()
    worst, means = 0, []
    for _ in range(150):
        w, h = np.exp(rng.uniform(np.log(2), np.log(300), 2))
        # Centres from well outside the frame to well inside: boxes at and beyond the border.
        x = rng.uniform(-w - 40, WIDTH + 40)
        y = rng.uniform(-h - 40, HEIGHT + 40)
        out = int(rng.choice([16, 64, 128, 256]))
        window = crop_window((x, y, w, h), float(rng.choice([2.0, 4.0, 5.0])), out)
        scales.add(reduction(window))
        assert jpeg.decoder() == "simplejpeg"
        new = load_crop(path, window).astype(int)
        old = _pil_crop(path, window).astype(int)
        assert new.shape == old.shape == (out, out, 3)
        diff = np.abs(new - old)
        worst = max(worst, int(diff.max()))
        means.append(float(diff.mean()))
    assert scales == {1, 2, 4, 8}  # every DCT scale was exercised
    assert worst <= 1  # float32 vs PIL's double, both truncating
    assert np.mean(means) < 0.01


def test_zero_padding_outside_the_frame(tmp_path: Path):
    path = _frame(tmp_path / "f.jpg")
    window = crop_window((-200.0, -200.0, 50.0, 50.0), 2.0, 32)  # wholly outside
    assert not load_crop(path, window).any()
    corner = crop_window((-10.0, -10.0, 40.0, 40.0), 2.0, 64)  # straddles the corner
    new, old = load_crop(path, corner), _pil_crop(path, corner)
    assert not new[:8, :8].any() and new[-8:, -8:].any()
    assert np.abs(new.astype(int) - old).max() <= 1


def test_fallback_to_pil_without_simplejpeg(tmp_path: Path, monkeypatch, capsys):
    path = _frame(tmp_path / "f.jpg")
    window = crop_window((100.0, 80.0, 60.0, 40.0), 4.0, 64)
    monkeypatch.setattr(jpeg, "AVAILABLE", False)
    monkeypatch.setattr(jpeg, "_simplejpeg", None)
    monkeypatch.setattr(jpeg, "_announced", False)
    assert jpeg.decoder() == "pil"
    crop = load_crop(path, window)
    frame = _Frame(path)
    assert frame._jpeg is None and frame.size == (WIDTH, HEIGHT)
    np.testing.assert_array_equal(frame.crop(window), crop)
    np.testing.assert_array_equal(crop, _pil_crop(path, window))
    jpeg._chosen = None  # asked again (another loader): still one line
    assert jpeg.decoder() == "pil"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("info: simplejpeg is not installed")


def test_decoder_chosen_by_environment(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.delenv(jpeg.ENV_VAR)
    assert jpeg.decoder() == "pil"  # the default
    monkeypatch.setenv(jpeg.ENV_VAR, "pil")
    jpeg._chosen = None
    assert jpeg.decoder() == "pil"
    assert jpeg.set_decoder("simplejpeg") == "simplejpeg"
    assert capsys.readouterr().err == ""  # a deliberate choice is not announced
    with pytest.raises(ValueError, match="invalid"):
        jpeg.set_decoder("turbo")
    jpeg.set_decoder(None)


def test_tracker_frame_uses_simplejpeg(tmp_path: Path):
    path = _frame(tmp_path / "f.jpg")
    frame = _Frame(path)
    assert frame._jpeg is not None and frame.size == (WIDTH, HEIGHT)
    window = crop_window((150.0, 100.0, 30.0, 30.0), 4.0, 128)
    assert np.abs(frame.crop(window).astype(int) - _pil_crop(path, window)).max() <= 1


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing"])
def test_corrupt_jpeg_raises_frame_error_naming_the_file(tmp_path: Path, damage: str):
    path = _frame(tmp_path / "00000001.jpg")
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 4)
    else:
        path.unlink()
    window = crop_window((100.0, 80.0, 60.0, 40.0), 4.0, 64)
    assert jpeg.decoder() == "simplejpeg"
    for load in (lambda: load_crop(path, window), lambda: _Frame(path).crop(window)):
        with pytest.raises(FrameError) as info:
            load()
        message = str(info.value)
        assert len(message.splitlines()) == 1
        assert str(path) in message
