"""Training-sample drawing and the DataLoader, on small LaSOT-layout sequences of real JPEG files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seqtrack_mlflow.config import ModelConfig, SamplingConfig
from seqtrack_mlflow.datasets.lasot import read_sequence
from seqtrack_mlflow.inputs.photometric import GRAY_WEIGHTS, model_inputs, photometric
from seqtrack_mlflow.inputs.processing import IMAGENET_MEAN, IMAGENET_STD, normalize
from seqtrack_mlflow.inputs.sampling import (
    MAX_TRIES,
    SamplingError,
    TrainingSamples,
    choose_frames,
    render_sample,
)

MODEL = ModelConfig(template_size=64, search_size=96, num_templates=2)
PLAIN = SamplingConfig(grayscale_prob=0.0, flip_prob=0.0, brightness_jitter=0.0)
TARGET_RGB = (230, 30, 30)


def write_sequence(
    root: Path, name: str, frames: int, hidden: tuple[int, ...] = (), size: tuple[int, int] = (320, 240)
) -> Path:
    """A LaSOT-layout sequence: textured frames with a red rectangle moving right and down."""
    class_name = name.rsplit("-", 1)[0]
    seq_dir = root / class_name / name
    (seq_dir / "img").mkdir(parents=True)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    boxes = []
    for i in range(frames):
        r = 50 + 25 * np.sin(xx / 23 + i)
        g = 130 + 90 * np.sin(xx / 31 + 0.3 * i) * np.cos(yy / 19)
        b = 130 + 90 * np.cos(yy / 27) * np.sin(xx / 41 + 0.2 * i)
        img = np.clip(np.stack([r, g, b], -1), 20, 255).astype(np.uint8)
        box = (60 + 4 * i, 50 + 2 * i, 36 + i % 5, 28)
        x, y, w, h = box
        if i not in hidden:
            img[y : y + h, x : x + w] = TARGET_RGB
        boxes.append(box)
        Image.fromarray(img).save(seq_dir / "img" / f"{i + 1:08d}.jpg", quality=95, subsampling=0)
    (seq_dir / "groundtruth.txt").write_text("".join(f"{x},{y},{w},{h}\n" for x, y, w, h in boxes))
    occluded = ",".join("1" if i in hidden else "0" for i in range(frames))
    (seq_dir / "full_occlusion.txt").write_text(occluded + "\n")
    (seq_dir / "out_of_view.txt").write_text(",".join("0" * frames) + "\n")
    (seq_dir / "nlp.txt").write_text("a red rectangle\n")
    return seq_dir


@pytest.fixture(scope="module")
def sequence(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("lasot")
    return read_sequence(write_sequence(root, "airplane-1", 30, hidden=(3, 4, 5, 17)))


def pixels(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """A uint8 (H, W, 3) crop as float64."""
    return np.asarray(x, dtype=np.float64)


def unnormalise(x: torch.Tensor) -> np.ndarray:
    """Model input (3, H, W) -> (H, W, 3) in [0, 255]."""
    return (np.moveaxis(x.numpy(), 0, -1) * IMAGENET_STD + IMAGENET_MEAN) * 255.0


def red_bbox(img: np.ndarray) -> np.ndarray:
    mask = (img[..., 0] > 150) & (img[..., 1] < 90) & (img[..., 2] < 90)
    ys, xs = np.nonzero(mask)
    assert xs.size, "target not visible in the crop"
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def xyxy(box) -> np.ndarray:
    x, y, w, h = (float(v) for v in box)
    return np.array([x, y, x + w, y + h])


def test_choose_frames_only_visible_within_interval_both_orders() -> None:
    visible = np.ones(100, dtype=bool)
    visible[20:40] = False
    visible[70:75] = False
    visible[[3, 50, 51, 90]] = False
    rng = np.random.default_rng(0)
    draws = np.array([choose_frames(visible, rng, max_interval=10) for _ in range(3000)])
    assert draws.shape == (3000, 3)
    assert visible[draws].all()
    assert (np.ptp(draws, axis=1) < 20).all()  # all three lie in [base - 10, base + 10)
    steps = np.diff(draws, axis=1)
    ascending = (steps >= 0).all(axis=1) & (steps > 0).any(axis=1)
    descending = (steps <= 0).all(axis=1) & (steps < 0).any(axis=1)
    assert (ascending | descending | (steps == 0).all(axis=1)).all()  # always sorted one way
    assert 0.4 < ascending.sum() / (ascending.sum() + descending.sum()) < 0.6
    assert set(np.unique(draws)) == set(np.flatnonzero(visible))  # every visible frame can be picked


def test_choose_frames_isolated_visible_frames_and_widening() -> None:
    visible = np.zeros(100, dtype=bool)
    visible[[0, 50, 99]] = True
    rng = np.random.default_rng(1)
    for _ in range(200):
        frames = choose_frames(visible, rng, max_interval=10)
        assert len(set(frames.tolist())) == 1 and frames[0] in (0, 50, 99)
    # An empty window (interval 0) is widened instead of failing or looping forever.
    assert visible[choose_frames(visible, rng, max_interval=0)].all()
    with pytest.raises(SamplingError):
        choose_frames(np.zeros(5, dtype=bool), rng, max_interval=10)


def test_unusable_sequences_are_skipped(tmp_path: Path) -> None:
    short = read_sequence(write_sequence(tmp_path, "cat-1", 10))
    six_visible = read_sequence(write_sequence(tmp_path, "cat-2", 20, hidden=tuple(range(6, 20))))
    seven_visible = read_sequence(write_sequence(tmp_path, "cat-3", 20, hidden=tuple(range(7, 20))))
    ds = TrainingSamples([short, six_visible, seven_visible], MODEL, SamplingConfig(), 0, 20)
    assert [s.name for s in ds.sequences] == ["cat-3"] and ds.skipped == 2
    for i in range(20):
        draw = ds.draw(i)
        assert draw.sequence == 0 and (draw.frames < 7).all()
    with pytest.raises(SamplingError, match="none of the 2 training sequences is usable") as err:
        TrainingSamples([short, six_visible], MODEL, SamplingConfig(), 0, 20)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_templates_centred_search_jittered_box_matches_pixels(sequence, flip_prob: float) -> None:
    ds = TrainingSamples([sequence], MODEL, dataclasses.replace(PLAIN, flip_prob=flip_prob), 3, 24)
    t, s = MODEL.template_size, MODEL.search_size
    centres, sizes = [], []
    for i in range(len(ds)):
        sample = ds[i]
        assert sample["templates"].shape == (2, t, t, 3) and sample["search"].shape == (s, s, 3)
        assert sample["templates"].dtype == sample["search"].dtype == torch.uint8
        assert sample["search_box"].dtype == sample["brightness"].dtype == torch.float32
        assert sample["brightness"].shape == (3,) and sample["gray"].dtype == torch.bool
        assert ds.draw(i).flip.tolist() == [bool(flip_prob)] * 3
        for template in sample["templates"]:  # no template jitter: target centred
            x0, y0, x1, y1 = red_bbox(pixels(template))
            assert abs((x0 + x1) / 2 - t / 2) <= 1.0 and abs((y0 + y1) / 2 - t / 2) <= 1.0
        box = sample["search_box"].numpy()
        gt = sequence.boxes[ds.draw(i).frames[-1]]
        scale = box[2] / gt[2]  # crop pixels per image pixel
        expected = np.clip(xyxy(box), 0, s)  # the target may reach past the crop border
        np.testing.assert_allclose(red_bbox(pixels(sample["search"])), expected, atol=0.6 + 0.35 * scale)
        centres.append(box[:2] + box[2:] / 2)
        sizes.append(box[2:])
    assert np.std(np.array(centres), axis=0).min() > 3.0  # the search crop is not centred on the target
    assert np.std(np.array(sizes)[:, 0]) > 1.0  # nor at a fixed scale


@pytest.mark.parametrize("flip", [(True, True, True), (True, False, False), (False, True, True)])
def test_flip_mirrors_each_crop_and_the_box_with_its_crop(sequence, flip: tuple[bool, ...]) -> None:
    ds = TrainingSamples([sequence], MODEL, SamplingConfig(), 5, 4)
    draw = dataclasses.replace(ds.draw(0), flip=np.zeros(3, dtype=bool), gray=False)
    plain = render_sample(sequence, draw, MODEL, ds.sampling)
    flipped = render_sample(sequence, dataclasses.replace(draw, flip=np.array(flip)), MODEL, ds.sampling)
    for i, template_flipped in enumerate(flip[:-1]):
        want = plain["templates"][i][:, ::-1] if template_flipped else plain["templates"][i]
        np.testing.assert_array_equal(flipped["templates"][i], want)
    want = plain["search"][:, ::-1] if flip[-1] else plain["search"]
    np.testing.assert_array_equal(flipped["search"], want)
    x, y, w, h = plain["search_box"]
    want_box = [MODEL.search_size - x - w, y, w, h] if flip[-1] else [x, y, w, h]
    np.testing.assert_allclose(flipped["search_box"], want_box, atol=1e-5)
    # The box is where the target is in the (possibly mirrored) search pixels.
    s = MODEL.search_size
    expected = np.clip(xyxy(flipped["search_box"]), 0, s)
    scale = flipped["search_box"][2] / sequence.boxes[draw.frames[-1]][2]
    found = red_bbox(pixels(flipped["search"]))
    np.testing.assert_allclose(found, expected, atol=0.6 + 0.35 * scale)


def test_flip_is_drawn_per_crop_and_grayscale_per_sample(sequence) -> None:
    """Official: each crop is flipped with probability 0.5 on its own; one grayscale roll per sample."""
    ds = TrainingSamples([sequence], MODEL, SamplingConfig(), 13, 2000)
    draws = [ds.draw(i) for i in range(len(ds))]
    flips = np.array([d.flip for d in draws])
    assert flips.shape == (2000, 3) and flips.dtype == bool
    assert 0.45 <= (flips[:, 0] != flips[:, -1]).mean() <= 0.55  # template 1 vs search
    assert 0.45 <= (flips[:, 0] != flips[:, 1]).mean() <= 0.55  # template 1 vs template 2
    assert np.all(np.abs(flips.mean(0) - 0.5) < 0.05)
    gray = np.array([d.gray for d in draws])
    assert gray.shape == (2000,) and 0.03 <= gray.mean() <= 0.07  # official p = 0.05, joint
    again = TrainingSamples([sequence], MODEL, SamplingConfig(), 13, 2000)
    assert all(np.array_equal(again.draw(i).flip, flips[i]) for i in (0, 999, 1999))


def test_grayscale_and_brightness_on_the_device(sequence) -> None:
    """The sample's gray roll and brightness factors, applied by `model_inputs` on the batch."""
    ds = TrainingSamples([sequence], MODEL, SamplingConfig(), 5, 4)
    draw = dataclasses.replace(ds.draw(1), gray=False, brightness=np.ones(3))

    def search_input(d) -> np.ndarray:
        out = render_sample(sequence, d, MODEL, ds.sampling)
        batch = {k: torch.from_numpy(v)[None] for k, v in out.items()}  # a batch of one
        templates, search = model_inputs(batch, torch.device("cpu"))
        assert templates.shape == (1, 2, 3, 64, 64) and search.shape == (1, 3, 96, 96)
        return unnormalise(search[0])

    base = search_input(draw)
    plain = render_sample(sequence, draw, MODEL, ds.sampling)["search"]
    np.testing.assert_allclose(base, pixels(plain), atol=1e-3)
    g = search_input(dataclasses.replace(draw, gray=True))
    np.testing.assert_allclose(g[..., 0], g[..., 1], atol=1e-3)
    np.testing.assert_allclose(g[..., 0], g[..., 2], atol=1e-3)
    assert np.abs(g - base).max() > 20  # the crop did turn grey
    bright = search_input(dataclasses.replace(draw, brightness=np.full(3, 1.2)))
    dark = base < 200
    np.testing.assert_allclose(bright[dark], np.clip(base[dark] * 1.2, 0, 255), atol=1e-2)
    assert bright.max() <= 255.0 + 1e-3  # clipped, not overflowing


@pytest.mark.parametrize("gray", [(False, False), (True, False), (True, True)])
def test_photometric_matches_plain_normalize(gray: tuple[bool, bool]) -> None:
    crops = np.random.default_rng(0).integers(0, 256, (2, 3, 8, 12, 3), dtype=np.uint8)  # B, n, H, W, 3
    brightness = np.array([[0.8, 1.2, 1.0], [1.1, 0.9, 1.3]], dtype=np.float32)
    ref = crops.astype(np.float32)
    weights = np.array(GRAY_WEIGHTS, dtype=np.float32)
    for b, rolled in enumerate(gray):
        if rolled:
            ref[b] = np.repeat((ref[b] @ weights)[..., None], 3, axis=-1)
    ref = normalize(np.clip(ref * brightness[:, :, None, None, None], 0, 255))
    out = photometric(torch.from_numpy(crops), torch.from_numpy(brightness), torch.tensor(gray))
    assert out.shape == (2, 3, 3, 8, 12) and out.dtype == torch.float32 and out.is_contiguous()
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)


def test_same_seed_epoch_index_gives_identical_sample(sequence) -> None:
    a = TrainingSamples([sequence], MODEL, SamplingConfig(), 7, 8)
    b = TrainingSamples([sequence], MODEL, SamplingConfig(), 7, 8)
    b[5]  # what was computed before must not matter
    for key, value in a[3].items():  # tensors, plus the bad-frame bookkeeping ("" when none)
        assert torch.equal(value, b[3][key]) if isinstance(value, torch.Tensor) else value == b[3][key]
    assert a[3]["bad_frame"] == "" and int(a[3]["skipped"]) == 0 and not bool(a[3]["failed"])
    b.set_epoch(1)
    assert not torch.equal(a[3]["search"], b[3]["search"])
    assert not torch.equal(a[3]["search"], a[4]["search"])
    other_seed = TrainingSamples([sequence], MODEL, SamplingConfig(), 8, 8)
    assert not torch.equal(a[3]["search"], other_seed[3]["search"])
    with pytest.raises(IndexError):
        a[8]


def test_retry_keeps_the_target_inside_the_search_crop(sequence) -> None:
    s = MODEL.search_size
    wild = TrainingSamples([sequence], MODEL, dataclasses.replace(PLAIN, center_jitter=50.0), 0, 40)
    for i in range(len(wild)):
        x, y, w, h = wild[i]["search_box"].tolist()
        assert w >= 1 and h >= 1 and 0 <= x + w / 2 < s and 0 <= y + h / 2 < s
    # Jitter so large that all MAX_TRIES draws miss: fall back to a crop centred on the target.
    hopeless = TrainingSamples([sequence], MODEL, dataclasses.replace(PLAIN, center_jitter=1e5), 0, 5)
    assert MAX_TRIES == 10
    for i in range(len(hopeless)):
        x, y, w, h = hopeless[i]["search_box"].tolist()
        assert abs(x + w / 2 - s / 2) <= 1.0 and abs(y + h / 2 - s / 2) <= 1.0
