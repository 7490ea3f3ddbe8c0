"""The training mix's draw: datasets by ratio as the official sampler, COCO's one image repeated for the
templates and the search frame, and a one-dataset run drawing exactly what it drew before."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from seqtrack_mlflow.config import ModelConfig, SamplingConfig
from seqtrack_mlflow.datasets import coco, got10k
from seqtrack_mlflow.datasets.synthetic_layouts import generate_coco, generate_got10k
from seqtrack_mlflow.inputs.pools import Mix, SamplePool, cumulative, pick
from seqtrack_mlflow.inputs.sampling import SamplingError, TrainingSamples

MODEL = ModelConfig(search_size=32, template_size=32)
SAMPLING = SamplingConfig()


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> tuple[list, coco.CocoObjects]:
    root = tmp_path_factory.mktemp("mix")
    generate_got10k(root / "got10k", train=3, val=0, test=0, frames=30, size=(96, 72), seed=1)
    generate_coco(root / "coco", images=3, size=(160, 120), seed=1)
    return list(got10k.read_split(root / "got10k", "train_full").sequences), coco.read_split(
        root / "coco"
    ).sequences


def test_pick_follows_the_ratios():
    cum = cumulative([SamplePool(str(k), [], ratio) for k, ratio in enumerate((1, 2, 3, 4))])
    rng = np.random.default_rng(0)
    counts = np.bincount([pick(cum, rng) for _ in range(40_000)], minlength=4)
    np.testing.assert_allclose(counts / counts.sum(), [0.1, 0.2, 0.3, 0.4], atol=0.01)
    assert cumulative([SamplePool("one", [])]) is None and pick(None, rng) == 0


def test_samples_are_drawn_from_each_dataset_by_its_ratio(trees):
    videos, objects = trees
    mix = Mix((SamplePool("got10k", videos, 1.0), SamplePool("coco", objects, 3.0, images=True)))
    samples = TrainingSamples(mix, MODEL, SAMPLING, seed=8, samples_per_epoch=2000)
    samples.set_epoch(1)
    counts = np.bincount([samples.draw(i).dataset for i in range(2000)], minlength=2)
    # Binomial(2000, 0.75): 4 standard deviations are 77 samples.
    assert abs(counts[1] - 1500) < 77, counts
    sample = samples[3]
    assert int(sample["dataset"]) == samples.draw(3).dataset  # each sample says where it came from


def test_an_image_dataset_repeats_its_one_image(trees):
    _, objects = trees
    samples = TrainingSamples(Mix((SamplePool("coco", objects, images=True),)), MODEL, SAMPLING, 8, 50)
    samples.set_epoch(1)
    for i in range(20):
        draw = samples.draw(i)
        assert draw.dataset == 0 and draw.frames.tolist() == [0, 0, 0]
        seq = samples.pools[0].sequences[draw.sequence]
        assert seq.num_frames == 1 and seq.frame_path(0).is_file()
    assert len(samples.pools[0].sequences) == len(objects)  # every object with an area is drawn
    # The templates are cut around the object's box, the search crop around its jittered box.
    out = samples[0]
    assert (
        torch.equal(out["templates"][0], out["templates"][1])
        or samples.draw(0).flip[0] != samples.draw(0).flip[1]
    )


def test_one_dataset_as_a_mix_draws_what_the_plain_list_draws(trees):
    videos, _ = trees
    plain = TrainingSamples(videos, MODEL, SAMPLING, 8, 30)
    mixed = TrainingSamples(Mix((SamplePool("got10k", videos),)), MODEL, SAMPLING, 8, 30)
    for ds in (plain, mixed):
        ds.set_epoch(2)
    for i in range(30):
        a, b = plain.draw(i), mixed.draw(i)
        assert (a.sequence, a.frames.tolist(), a.search_box.tolist()) == (
            b.sequence,
            b.frames.tolist(),
            b.search_box.tolist(),
        )
    assert "dataset" not in plain[0] and "dataset" in mixed[0]


def test_an_empty_dataset_of_a_mix_is_refused_naming_it(trees):
    videos, objects = trees
    with pytest.raises(SamplingError, match="none of the 0 training sequences of trackingnet is usable"):
        TrainingSamples(
            Mix((SamplePool("got10k", videos), SamplePool("trackingnet", []))), MODEL, SAMPLING, 8, 10
        )
    flat = objects.subset(np.arange(len(objects)) == 0)
    zero = dataclasses.replace(flat, boxes=flat.boxes * [1, 1, 0, 1])
    with pytest.raises(SamplingError, match="of coco is usable"):  # no area: the official crop is refused
        TrainingSamples(Mix((SamplePool("coco", zero, images=True),)), MODEL, SAMPLING, 8, 10)
