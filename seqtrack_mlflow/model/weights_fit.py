"""Whether a state dict fits the model a config describes, judged on the meta device: no memory.

A checkpoint carries its model config beside its weights. A small file whose config claims a far
larger model (ViT-L for a tiny state dict) must be refused before anything builds that model, or the
refusal costs the model's memory (1.2 GB of fp32 weights for L256). The expected names and shapes
come from the model built on the meta device, which allocates no tensor data.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

import torch
from torch import Tensor

from ..config import ModelConfig
from .seqtrack import SeqTrack


@functools.lru_cache(maxsize=16)
def meta_state(cfg: ModelConfig) -> dict[str, Tensor]:
    """Our state dict for `cfg` on the meta device: names and shapes, no memory."""
    with torch.device("meta"):
        return dict(SeqTrack(cfg).state_dict())


def weights_mismatch(cfg: ModelConfig, state_dict: Mapping[str, Tensor]) -> str | None:
    """What keeps `state_dict` from loading into the model `cfg` describes (one phrase), or None.

    Keys may carry the prefix of a DDP or compiled wrapper. A config with more blocks than the state
    dict has tensors is refused before even the meta build (every block holds tensors), so a config
    claiming a million blocks costs nothing either.
    """
    try:
        cfg = dataclasses.replace(cfg, pretrained="none")
        cfg.validate()
        blocks = int(cfg.encoder_depth) + int(cfg.decoder_layers)
        if blocks > len(state_dict):
            return f"{blocks} blocks, {len(state_dict)} tensors"
        expected = meta_state(cfg)
    except (
        TypeError,
        ValueError,
        AttributeError,
        RuntimeError,
        OverflowError,
    ) as exc:  # ConfigError: a ValueError
        return f"its model config is unusable: {str(exc).strip().splitlines()[0][:160]}"
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state_dict.items()}
    problem = _first_difference({k: tuple(v.shape) for k, v in state.items()}, expected)
    if problem is None:
        return None
    return (
        f"{problem}; the config describes {_count(expected) / 1e6:.1f}M parameters, "
        f"the file holds {_count(state) / 1e6:.1f}M"
    )


def _count(state: Mapping[str, Tensor]) -> int:
    return sum(t.numel() for t in state.values())


def _first_difference(shapes: Mapping[str, tuple[int, ...]], expected: Mapping[str, Tensor]) -> str | None:
    missing = [k for k in expected if k not in shapes]
    if missing:
        return f"{len(missing)} tensors missing, first {missing[0]}"
    unexpected = [k for k in shapes if k not in expected]
    if unexpected:
        return f"{len(unexpected)} unexpected tensors, first {unexpected[0]}"
    wrong = next((k for k, v in expected.items() if tuple(v.shape) != shapes[k]), None)
    return f"{wrong} is {shapes[wrong]}, the config needs {tuple(expected[wrong].shape)}" if wrong else None


__all__ = ["meta_state", "weights_mismatch"]
