"""The loader: batches cut into reused shared-memory slots, equal to the samples, never overwritten
under a consumer, any worker count and rank split."""

from __future__ import annotations

import pytest
import torch

from seqtrack_mlflow.config import ModelConfig, SamplingConfig
from seqtrack_mlflow.datasets.lasot import read_sequence
from seqtrack_mlflow.datasets.synthetic import generate_lasot
from seqtrack_mlflow.inputs import batches as batches_module
from seqtrack_mlflow.inputs.batches import SLOTS_PER_WORKER, RankSampler, make_loader
from seqtrack_mlflow.inputs.sampling import TrainingSamples

MODEL = ModelConfig(template_size=64, search_size=96, num_templates=2)
KEYS = ("templates", "search", "search_box", "brightness", "gray", "skipped", "failed")


@pytest.fixture(scope="module")
def sequences(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("lasot")
    dirs = generate_lasot(root, ["airplane"], sequences_per_class=2, frames=30, size=(320, 240), seed=3)
    return [read_sequence(d) for d in dirs]


def expected(ds: TrainingSamples, indices) -> dict[str, torch.Tensor]:
    samples = [ds[i] for i in indices]
    return {key: torch.stack([s[key] for s in samples]) for key in KEYS}


def in_slot(batch: dict, loader) -> bool:
    """Whether the batch's crops lie in one of the loader's shared slots (not fresh memory)."""
    ptr = batch["search"].untyped_storage().data_ptr()
    return any(ptr == b.untyped_storage().data_ptr() for b in loader.slots.buffers)


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_batches_equal_the_samples_and_come_from_slots(sequences, workers: int) -> None:
    ds = TrainingSamples(sequences, MODEL, SamplingConfig(), 11, 26)
    ds.set_epoch(2)  # workers must see the epoch set before iteration
    loader = make_loader(ds, batch_size=4, workers=workers)
    sizes = []
    for k, batch in enumerate(loader):  # a trainer's loop: each batch dropped when the next comes
        assert in_slot(batch, loader), f"batch {k} went through fresh memory"
        want = expected(ds, range(4 * k, 4 * k + len(batch["search"])))
        for key in KEYS:
            assert torch.equal(batch[key], want[key]), (k, key)
        assert batch["bad_frame"] == [""] * len(batch["search"])
        sizes.append(len(batch["search"]))
    assert sizes == [4] * 6 + [2]
    assert batch["templates"].shape == (2, 2, 64, 64, 3) and batch["templates"].dtype == torch.uint8
    assert batch["search"].shape == (2, 96, 96, 3) and batch["search_box"].dtype == torch.float32


@pytest.mark.parametrize("workers", [0, 1])
def test_kept_batches_are_never_overwritten(sequences, workers: int) -> None:
    """A consumer that keeps every batch keeps its slots; the worker then uses fresh memory."""
    ds = TrainingSamples(sequences, MODEL, SamplingConfig(), 5, 2 * (SLOTS_PER_WORKER + 4))
    loader = make_loader(ds, batch_size=2, workers=workers)
    kept = list(loader)
    views = [b["search"][0] for b in kept]  # a view alone keeps its slot too
    assert len(kept) == SLOTS_PER_WORKER + 4
    from_slots = sum(in_slot(b, loader) for b in kept)
    assert 0 < from_slots <= SLOTS_PER_WORKER
    for k, batch in enumerate(kept):
        want = expected(ds, (2 * k, 2 * k + 1))
        for key in KEYS:
            assert torch.equal(batch[key], want[key]), (k, key)
        assert torch.equal(views[k], want["search"][0])


def test_slots_come_back_once_a_batch_is_dropped(sequences) -> None:
    ds = TrainingSamples(sequences, MODEL, SamplingConfig(), 5, 40)
    loader = make_loader(ds, batch_size=2, workers=0)
    it = iter(loader)
    first = next(it)
    view = first["templates"][:, 0]
    view_pixels = view.clone()
    del first
    for _ in range(3 * SLOTS_PER_WORKER):  # far more batches than slots: all but the view's come back
        assert in_slot(next(it), loader)
    assert int(loader.slots.busy.sum()) <= 3  # the view's slot, the last batch's, the one being cut
    assert torch.equal(view, view_pixels)  # its slot was never reused


def test_without_shared_memory_for_slots_batches_still_arrive(sequences, monkeypatch, capsys) -> None:
    def no_room(*_args, **_kwargs):
        raise RuntimeError("unable to allocate shared memory(shm): No space left on device")

    monkeypatch.setattr(batches_module, "BatchSlots", no_room)
    ds = TrainingSamples(sequences, MODEL, SamplingConfig(), 5, 6)
    got = list(make_loader(ds, batch_size=4, workers=1))
    assert torch.equal(torch.cat([b["search"] for b in got]), expected(ds, range(6))["search"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no shared memory for the loader's batch slots" in err[0]
    assert "--shm-size" in err[0]


def test_rank_split_covers_every_index_once(sequences) -> None:
    shares = [list(RankSampler(11, rank, 2)) for rank in range(2)]
    assert shares == [[0, 2, 4, 6, 8, 10], [1, 3, 5, 7, 9]]
    assert sorted(shares[0] + shares[1]) == list(range(11))
    assert [len(RankSampler(11, rank, 2)) for rank in range(2)] == [6, 5]
    ds = TrainingSamples(sequences, MODEL, SamplingConfig(), 4, 5)
    boxes = {
        rank: torch.cat([b["search_box"].clone() for b in make_loader(ds, 2, 0, rank=rank, world_size=2)])
        for rank in range(2)
    }
    assert torch.equal(boxes[0], torch.stack([ds[i]["search_box"] for i in (0, 2, 4)]))
    assert torch.equal(boxes[1], torch.stack([ds[i]["search_box"] for i in (1, 3)]))
    resumed = [b["search_box"].clone() for b in make_loader(ds, 2, 0, rank=0, world_size=2, start=2)]
    assert torch.equal(torch.cat(resumed), torch.stack([ds[i]["search_box"] for i in (4,)]))
    with pytest.raises(ValueError, match="rank 2 is invalid"):
        RankSampler(11, 2, 2)
