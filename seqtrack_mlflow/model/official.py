"""The official SeqTrack checkpoint layout and ours: names, position tables, and which preset fits.

Pure functions on state dicts and shapes, in the spirit of timm's `checkpoint_filter_fn`: no file is
read here (`torch_zip` reads, without running any code of the file) and no model is built (a
preset's expected shapes come from the caller, `factory.official_preset_shapes`), so this module
depends on neither the model class nor the reader.

The official trainer (`BaseTrainer.save_checkpoint` in microsoft/VideoX SeqTrack) writes
`torch.save({'epoch', 'actor_type', 'net_type', 'net': net.state_dict(), 'net_info', 'constructor',
'optimizer', 'stats', 'settings'})`; only `net` and `epoch` are used.

Names: the official model (`SEQTRACK` in `lib/models/seqtrack/seqtrack.py`) nests the ViT under
`encoder.body`, calls the encoder-to-decoder Linear `bottleneck`, the memory positions `pos_embed`
(1, Ns, 256), and the output MLP `vocab_embed`; its ViT keeps ONE positional table
`pos_embed` (1, Ns + Nt, dim), search rows first, the template rows shared by every template
(`forward_features` adds `pos_embed[:, num_patches_search:]` to each template). Our encoder keeps
the two halves as `pos_embed_search` / `pos_embed_template`; `to_official_state_dict` and
`from_official_state_dict` convert between the two layouts, tensor for tensor.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..config import PRESETS, ModelConfig

OFFICIAL_PRESETS = ("b256", "b384", "l256", "l384")  # the four released SeqTrack models

_POS_SEARCH = "encoder.pos_embed_search"
_POS_TEMPLATE = "encoder.pos_embed_template"
_MEMORY_POS = "bridge.pos"
_OFFICIAL_POS = "encoder.body.pos_embed"
_OFFICIAL_MEMORY_POS = "pos_embed"
# Keys only the official layout has: how a `net` state dict is recognised.
MARKER_KEYS = (_OFFICIAL_POS, "encoder.body.patch_embed.proj.weight", "vocab_embed.layers.0.weight")

# Our name prefix -> the official one ('#' a layer index), first match wins in either direction
# (official module names, see the module docstring).
_PREFIXES = (
    ("encoder.patch_embed.", "encoder.body.patch_embed."),
    ("encoder.blocks.", "encoder.body.blocks."),
    ("encoder.norm.", "encoder.body.norm."),
    ("bridge.proj.", "bottleneck."),
    ("decoder.word_embeddings.", "decoder.embedding.word_embeddings."),
    ("decoder.query_pos.", "decoder.embedding.position_embeddings."),
    ("decoder.embed_norm.", "decoder.embedding.LayerNorm."),
    ("decoder.layers.#.cross_attn.", "decoder.body.layers.#.multihead_attn."),
    ("decoder.layers.", "decoder.body.layers."),
    ("decoder.norm.", "decoder.body.norm."),
    ("head.", "vocab_embed."),
)

ShapesOf = Callable[[str], Mapping[str, tuple[int, ...]]]  # preset name -> its official key -> shape


def _rule(source: str, target: str) -> tuple[re.Pattern[str], str]:
    pattern = r"(\d+)".join(re.escape(part) for part in source.split("#"))
    return re.compile("^" + pattern), target.replace("#", r"\1")


_TO_OFFICIAL = tuple(_rule(ours, theirs) for ours, theirs in _PREFIXES)
_FROM_OFFICIAL = tuple(_rule(theirs, ours) for ours, theirs in _PREFIXES)


class OfficialCheckpointError(ValueError):
    """An official checkpoint that cannot be read or fits no preset: one line, expected vs found."""


def _rename(key: str, rules: tuple[tuple[re.Pattern[str], str], ...], layout: str) -> str:
    for pattern, replacement in rules:
        if pattern.match(key):
            return pattern.sub(replacement, key, count=1)
    raise KeyError(f"no {layout} name for {key!r}")


def official_key(ours: str) -> str:
    """The official name of one of our state-dict keys (not the two position tables, see below)."""
    return _rename(ours, _TO_OFFICIAL, "official")


def our_key(official: str) -> str:
    """Our name of an official state-dict key (not the position tables): `official_key` inverted."""
    return _rename(official, _FROM_OFFICIAL, "seqtrack-mlflow")


def to_official_state_dict(model: nn.Module | Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Our model (or state dict) under the official names and shapes, e.g. to export or test.

    The search and template position tables become one (1, Ns + Nt, dim) table, search rows first,
    and the memory positions get the official leading batch axis.
    """
    state = model.state_dict() if isinstance(model, nn.Module) else model
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key == _POS_SEARCH:
            out[_OFFICIAL_POS] = torch.cat([value, state[_POS_TEMPLATE]], dim=1)
        elif key == _POS_TEMPLATE:
            continue
        elif key == _MEMORY_POS:
            out[_OFFICIAL_MEMORY_POS] = value.unsqueeze(0)
        else:
            out[official_key(key)] = value
    return out


def from_official_state_dict(net: Mapping[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """The official `net` under our names and shapes for `cfg` (check its shapes first: `check_preset`).

    `cfg` says where the position table splits: its first `search_grid**2` rows are the search's.
    """
    num_search = cfg.search_grid**2
    out: dict[str, Tensor] = {}
    for key, value in net.items():
        if key == _OFFICIAL_POS:
            out[_POS_SEARCH] = value[:, :num_search].clone()
            out[_POS_TEMPLATE] = value[:, num_search:].clone()
        elif key == _OFFICIAL_MEMORY_POS:
            out[_MEMORY_POS] = value[0]
        else:
            out[our_key(key)] = value
    return out


# ---------------------------------------------------------------- the container


def net_of(obj: Any) -> Mapping[str, Any] | None:
    """The `net` state dict of an official container (or a bare official state dict), else None."""
    if not isinstance(obj, Mapping):
        return None
    net = obj.get("net", obj)
    if not isinstance(net, Mapping) or not all(isinstance(k, str) for k in net):
        return None
    if net and all(k.startswith("module.") for k in net):  # saved from a DataParallel wrapper
        net = {k.removeprefix("module."): v for k, v in net.items()}
    return net if all(k in net for k in MARKER_KEYS) else None


def require_net(obj: Any, source: object) -> Mapping[str, Any]:
    """`net_of(obj)`, or a one-line refusal naming what `source` holds instead."""
    net = net_of(obj)
    if net is None:
        found = ", ".join(map(str, list(obj)[:8])) if isinstance(obj, Mapping) else type(obj).__name__
        raise OfficialCheckpointError(
            f"{source} is not an official SeqTrack checkpoint: expected a dict with 'net' holding "
            f"{', '.join(MARKER_KEYS)}; found {found}"
        )
    return net


def epoch_of(obj: Mapping[str, Any]) -> int | None:
    """The container's epoch; None for a bare state dict or a value that is not an int."""
    epoch = obj.get("epoch") if "net" in obj else None
    return epoch if type(epoch) is int else None


def as_float32(name: str, tensor: Tensor) -> Tensor:
    """The official weights are float32 (trained without AMP); a half-precision copy is widened."""
    if not tensor.is_floating_point():
        raise OfficialCheckpointError(f"net[{name!r}] holds {tensor.dtype}, expected floating-point weights")
    return tensor if tensor.dtype == torch.float32 else tensor.float()


# ---------------------------------------------------------------- presets from the shapes


def _summary(shapes: Mapping[str, tuple[int, ...]]) -> str:
    """Width, depth and position rows: what tells the official presets apart."""
    width = shapes.get("encoder.body.patch_embed.proj.weight", ("?",))[0]
    blocks = {m.group(1) for k in shapes if (m := re.match(r"encoder\.body\.blocks\.(\d+)\.", k))}
    pos = shapes.get(_OFFICIAL_POS, ())
    rows = pos[1] if len(pos) == 3 else "?"
    return f"width {width}, {len(blocks)} blocks, {rows} position rows"


def _mismatch(shapes: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]]) -> str | None:
    """The first difference between the file's and a preset's tensors, or None if they agree."""
    missing = [k for k in expected if k not in shapes]
    if missing:
        return f"{len(missing)} tensors missing (first {missing[0]})"
    unexpected = [k for k in shapes if k not in expected]
    if unexpected:
        return f"{len(unexpected)} unexpected tensors (first {unexpected[0]})"
    for key, shape in expected.items():
        if tuple(shapes[key]) != shape:
            return f"{key} is {tuple(shapes[key])}, expected {shape}"
    return None


def infer_preset(shapes: Mapping[str, tuple[int, ...]], shapes_of: ShapesOf) -> str:
    """The official preset whose tensors (`shapes_of(name)`) have exactly these names and shapes;
    else a one-line refusal."""
    fits = [name for name in OFFICIAL_PRESETS if _mismatch(shapes, shapes_of(name)) is None]
    if fits:
        return fits[0]
    expected = "; ".join(f"{name} ({_summary(shapes_of(name))})" for name in OFFICIAL_PRESETS)
    found = _summary(shapes)
    # Same width, depth and rows as a preset: name the tensor that still differs.
    detail = "".join(
        f"; against {name}: {_mismatch(shapes, shapes_of(name))}"
        for name in OFFICIAL_PRESETS
        if _summary(shapes_of(name)) == found
    )
    raise OfficialCheckpointError(
        f"official checkpoint fits no preset: expected one of {expected}; found {found}{detail}"
    )


def check_preset(shapes: Mapping[str, tuple[int, ...]], name: str, shapes_of: ShapesOf) -> None:
    """Refuse in one line when the tensors do not fit the given preset (`shapes_of(name)`)."""
    if name not in PRESETS:
        raise OfficialCheckpointError(f"unknown preset {name!r}: choose one of {', '.join(sorted(PRESETS))}")
    expected = shapes_of(name)
    problem = _mismatch(shapes, expected)
    if problem is None:
        return
    fits = [n for n in OFFICIAL_PRESETS if _mismatch(shapes, shapes_of(n)) is None]
    hint = f"; the file fits preset {fits[0]}" if fits else ""
    raise OfficialCheckpointError(
        f"official checkpoint does not fit preset {name}: expected {_summary(expected)}, "
        f"found {_summary(shapes)} ({problem}){hint}"
    )


__all__ = [
    "MARKER_KEYS",
    "OFFICIAL_PRESETS",
    "OfficialCheckpointError",
    "ShapesOf",
    "as_float32",
    "check_preset",
    "epoch_of",
    "from_official_state_dict",
    "infer_preset",
    "net_of",
    "official_key",
    "our_key",
    "require_net",
    "to_official_state_dict",
]
