"""torch.distributed set-up for `torchrun`: one process per device, rank 0 does all I/O."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from seqtrack_mlflow.config import ConfigError


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    """`auto` = CUDA when present, else CPU; an explicit CUDA request without CUDA is an error."""
    if preference == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={preference} but no CUDA device is visible: use -P device=cpu or auto")
        return torch.device(preference if ":" in preference else f"cuda:{local_rank}")
    if preference == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"device={preference!r} is not known: use auto, cpu, cuda or cuda:N")


def setup(preference: str) -> DistContext:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(preference, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank, world, local_rank, device)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def check_shares(samples_per_epoch: int, world_size: int) -> None:
    """Equal shares give every rank the same number of steps, so DDP's collectives always match."""
    if samples_per_epoch % world_size:
        raise ConfigError(
            f"samples_per_epoch={samples_per_epoch} is not divisible by the {world_size} processes: "
            "choose a multiple of the process count"
        )
