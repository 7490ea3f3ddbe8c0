"""Training batches: DataLoader workers cut each batch's crops straight into reused shared memory.

PyTorch's default hand-over collates every worker batch into freshly allocated shared memory, whose
pages the kernel zeroes and maps anew in the worker and again in the consumer: with 256-px crops
(590 KB a sample) that was a fifth of a worker's time on the 2-core development VM (perf: page
clearing and faults), more than the crop's resampling. Here the consumer allocates a few batch-sized
slots of shared memory per worker once per loader, before the workers start; a worker takes one of
its own free slots, renders the batch's crops into it (`TrainingSamples.render_into`, no collate
copy) and sends only the slot number with the small per-sample fields; the consumer reads the crops
in place.

A slot is returned to its worker only when no tensor in the consuming process refers to it any more
(the storage's use count is back to the slot's own references), checked each time a batch is drawn:
a consumer that keeps batches (or views of them) keeps their slots, and a worker that finds none of
its slots free renders that batch into fresh memory, PyTorch's way. Batches are therefore never
overwritten under a consumer, and the crops are the same whichever way they travel (tested).

On a GPU the slots are pageable memory: `model_inputs` copies them to the device through CUDA's
staging buffer (a copy from pageable memory returns once the source is read, so releasing the slot
after it is safe), where PyTorch's loader used to pin each batch in a thread first. Not yet measured
on a GPU.
"""

from __future__ import annotations

import math
import signal
import sys
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler, get_worker_info

from seqtrack_mlflow.inputs.sampling import TrainingSamples
from seqtrack_mlflow.messages import first_line

PREFETCH = 2  # batches in flight per worker (DataLoader's prefetch_factor)
# A worker's slots: its batches in flight, the batch the consumer is using and the previous one (the
# loop variable still holds it while the next is drawn), and one spare.
SLOTS_PER_WORKER = PREFETCH + 3


class RankSampler(Sampler[int]):
    """Indices rank, rank + world_size, ... of the epoch, in order (each rank its own share, no padding)."""

    def __init__(self, num_samples: int, rank: int = 0, world_size: int = 1, start: int = 0) -> None:
        """`start`: samples of this rank's share already done (a resumed epoch skips them)."""
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"rank {rank} is invalid for world_size {world_size}: use 0 <= rank < {world_size}"
            )
        self.indices = range(rank, num_samples, world_size)[start:]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class BatchSlots:
    """`workers` x SLOTS_PER_WORKER shared uint8 buffers of one batch each, and a shared busy flag per
    slot: a worker sets it when it takes the slot, the consumer clears it when it lets the slot go."""

    def __init__(self, samples: TrainingSamples, batch_size: int, workers: int) -> None:
        template_shape, search_shape = ((batch_size, *shape) for shape in samples.crop_shapes())
        t_bytes, s_bytes = math.prod(template_shape), math.prod(search_shape)
        count = max(workers, 1) * SLOTS_PER_WORKER
        size = t_bytes + s_bytes
        self.buffers = [torch.empty(size, dtype=torch.uint8).share_memory_() for _ in range(count)]
        self.templates = [b[:t_bytes].view(template_shape) for b in self.buffers]
        self.search = [b[t_bytes:].view(search_shape) for b in self.buffers]
        self.busy = torch.zeros(count, dtype=torch.int32).share_memory_()
        # The slot's own references to its storage; more means a batch handed out is still alive.
        self.own_refs = [_use_count(b) for b in self.buffers]

    def take(self, worker: int) -> int:
        """A free slot of `worker` (now busy), or -1 when all of them are in use."""
        busy = self.busy.numpy()
        for slot in range(worker * SLOTS_PER_WORKER, (worker + 1) * SLOTS_PER_WORKER):
            if busy[slot] == 0:
                busy[slot] = 1
                return slot
        return -1

    def release_unused(self, slots: list[int]) -> list[int]:
        """Free those of `slots` no tensor refers to any more; returns the ones still in use."""
        kept = []
        for slot in slots:
            if _use_count(self.buffers[slot]) > self.own_refs[slot]:
                kept.append(slot)
            else:
                self.busy[slot] = 0
        return kept


def _use_count(buffer: torch.Tensor) -> int:
    return torch._C._storage_Use_Count(buffer.untyped_storage()._cdata)


class _RenderBatches(Dataset):
    """Index: a list of sample indices (one batch). Runs in the workers (or in the consumer with 0
    workers): the crops go into a slot when one is free, else into fresh arrays sent the usual way."""

    def __init__(self, samples: TrainingSamples, slots: BatchSlots | None) -> None:
        self.samples = samples
        self.slots = slots

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, indices: list[int]) -> dict:
        info = get_worker_info()
        slot = self.slots.take(info.id if info is not None else 0) if self.slots is not None else -1
        n = len(indices)
        if slot >= 0:
            templates, search = self.slots.templates[slot].numpy(), self.slots.search[slot].numpy()
        else:
            template_shape, search_shape = self.samples.crop_shapes()
            templates = np.empty((n, *template_shape), np.uint8)
            search = np.empty((n, *search_shape), np.uint8)
        fields = [self.samples.render_into(i, templates[k], search[k]) for k, i in enumerate(indices)]
        batch = {key: np.stack([f[key] for f in fields]) for key in fields[0] if key != "bad_frame"}
        batch["bad_frame"] = [f["bad_frame"] for f in fields]
        batch["slot"] = slot
        if slot < 0:
            batch["templates"] = torch.from_numpy(templates)
            batch["search"] = torch.from_numpy(search)
        return batch


def _as_is(batch: dict) -> dict:
    return batch


def _worker_init(_worker_id: int) -> None:
    # Each worker decodes JPEGs on one core; torch intra-op threads would only oversubscribe.
    torch.set_num_threads(1)
    # A signal to the process group is the main process's to handle (it stops at a step boundary and
    # shuts the workers down); a worker dying on it first would end the epoch with a loader error.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)


class Batches:
    """This rank's batches of one epoch: dicts of tensors, the crops uint8 (`photometric.model_inputs`
    turns them into model input), plus `skipped`, `bad_frame` and `failed` (`SkipCounter`)."""

    def __init__(self, loader: DataLoader, slots: BatchSlots | None) -> None:
        self.loader = loader
        self.slots = slots

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict]:
        held: list[int] = []  # slots handed out and not yet released
        batches = iter(self.loader)
        try:
            while True:
                if self.slots is not None:  # before the next batch is asked for: a worker may need one
                    held = self.slots.release_unused(held)
                try:
                    raw = next(batches)
                except StopIteration:
                    return
                yield self._batch(raw, held)
        finally:
            if self.slots is not None:
                self.slots.release_unused(held)

    def _batch(self, raw: dict, held: list[int]) -> dict:
        slot = raw.pop("slot")
        batch = {key: torch.from_numpy(value) for key, value in raw.items() if isinstance(value, np.ndarray)}
        batch["bad_frame"] = raw["bad_frame"]
        n = len(raw["bad_frame"])
        if slot >= 0:
            assert self.slots is not None
            batch["templates"] = self.slots.templates[slot][:n]
            batch["search"] = self.slots.search[slot][:n]
            held.append(slot)
        else:
            batch["templates"], batch["search"] = raw["templates"], raw["search"]
        return batch


def make_loader(
    dataset: TrainingSamples,
    batch_size: int,
    workers: int,
    rank: int = 0,
    world_size: int = 1,
    start: int = 0,
) -> Batches:
    """Batches of this rank's share of the epoch, from its `start`-th sample on (resume mid-epoch)."""
    try:
        slots: BatchSlots | None = BatchSlots(dataset, batch_size, workers)
    except RuntimeError as exc:  # shared memory too small (a container's default /dev/shm is 64 MB)
        slots = None
        print(
            f"warning: no shared memory for the loader's batch slots ({first_line(exc)}): "
            "batches travel through fresh shared memory, slower; give /dev/shm more room "
            "(docker run --shm-size=2g)",
            file=sys.stderr,
            flush=True,
        )
    sampler = BatchSampler(RankSampler(len(dataset), rank, world_size, start), batch_size, drop_last=False)
    loader = DataLoader(
        _RenderBatches(dataset, slots),
        batch_size=None,  # the sampler yields whole batches
        sampler=sampler,
        collate_fn=_as_is,  # numpy fields travel pickled (small); crops in the slots
        # Its own generator: creating an iterator draws a base seed, which from the global RNG would
        # shift the dropout stream of an epoch resumed part-way (samples are seeded per index anyway).
        generator=torch.Generator().manual_seed(0),
        num_workers=workers,
        prefetch_factor=PREFETCH if workers > 0 else None,
        drop_last=False,
        persistent_workers=False,
        worker_init_fn=_worker_init if workers > 0 else None,
    )
    return Batches(loader, slots)


__all__ = ["SLOTS_PER_WORKER", "BatchSlots", "Batches", "RankSampler", "make_loader"]
