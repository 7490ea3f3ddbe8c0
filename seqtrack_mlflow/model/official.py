"""Read the official SeqTrack release files (e.g. `SEQTRACK_ep0500.pth.tar`) without running their code.

The official trainer (`BaseTrainer.save_checkpoint` in microsoft/VideoX SeqTrack) writes
`torch.save({'epoch', 'actor_type', 'net_type', 'net': net.state_dict(), 'net_info', 'constructor',
'optimizer', 'stats', 'settings'})`; `stats`, `settings` and `constructor` are objects of the official
training code, so `torch.load(weights_only=True)` refuses the file and a plain `torch.load` would
import and run that code. This module reads the zip container itself:

- `data.pkl` is unpickled by `_RestrictedUnpickler`, whose `find_class` (the hook the Python docs
  recommend for "restricting globals") resolves only our own tensor-record functions, the storage
  type markers, OrderedDict/set/frozenset and latin-1 bytes; every other global becomes an inert
  `OfficialObject` subclass whose construction, `__setstate__` and item/append calls only store data.
  Nothing from the file can reach a callable that acts: the only callables the pickle can obtain are
  the ones `find_class` returns.
- tensors are first read as `TensorRef` records (storage key, dtype, offset, size, stride), so
  shapes are checked, and the preset chosen, before any tensor data is read; then only the `net`
  tensors are read (not the optimizer state), with `torch.frombuffer` + `torch.as_strided`, which
  check the bounds against the stored bytes.

Why not `torch.load(..., weights_only=False, pickle_module=restricted)`: `torch.load` then hands a
TorchScript archive to `torch.jit.load` (which runs its code), uses `pickle_module.load` on several
records for the legacy formats, wraps `pickle_module.Unpickler` in a private class that changes
across versions, and `TORCH_FORCE_WEIGHTS_ONLY_LOAD` makes it refuse `pickle_module`. Reading the
zip (`<archive>/data.pkl` + `<archive>/data/<key>` + `<archive>/byteorder`, the format `torch.save`
has written since PyTorch 1.6) needs only `zipfile`, `pickle` and public tensor functions. The legacy
pre-1.6 format is refused.

Names: the official model (`SEQTRACK` in `lib/models/seqtrack/seqtrack.py`) nests the ViT under
`encoder.body`, calls the encoder-to-decoder Linear `bottleneck`, the memory positions `pos_embed`
(1, Ns, 256), and the output MLP `vocab_embed`; its ViT keeps ONE positional table
`pos_embed` (1, Ns + Nt, dim), search rows first, the template rows shared by every template
(`forward_features` adds `pos_embed[:, num_patches_search:]` to each template). Our encoder keeps
the two halves as `pos_embed_search` / `pos_embed_template`; `to_official_state_dict` and
`from_official_state_dict` convert between the two layouts, tensor for tensor.
"""

from __future__ import annotations

import _compat_pickle
import dataclasses
import functools
import io
import os
import pickle
import re
import sys
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from ..config import PRESETS, ModelConfig
from ..config import preset as preset_settings
from .seqtrack import SeqTrack

OFFICIAL_PRESETS = ("b256", "b384", "l256", "l384")  # the four released SeqTrack models

_POS_SEARCH = "encoder.pos_embed_search"
_POS_TEMPLATE = "encoder.pos_embed_template"
_MEMORY_POS = "bridge.pos"
_OFFICIAL_POS = "encoder.body.pos_embed"
_OFFICIAL_MEMORY_POS = "pos_embed"
# Keys only the official layout has: how a `net` state dict is recognised.
_MARKER_KEYS = (_OFFICIAL_POS, "encoder.body.patch_embed.proj.weight", "vocab_embed.layers.0.weight")

# Our name -> official name, first match wins (official module names, see the module docstring).
_RENAMES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"^encoder\.(patch_embed|blocks|norm)\.", r"encoder.body.\1."),
        (r"^bridge\.proj\.", "bottleneck."),
        (r"^decoder\.word_embeddings\.", "decoder.embedding.word_embeddings."),
        (r"^decoder\.query_pos\.", "decoder.embedding.position_embeddings."),
        (r"^decoder\.embed_norm\.", "decoder.embedding.LayerNorm."),
        (r"^decoder\.layers\.(\d+)\.cross_attn\.", r"decoder.body.layers.\1.multihead_attn."),
        (r"^decoder\.(layers|norm)\.", r"decoder.body.\1."),
        (r"^head\.", "vocab_embed."),
    )
)


class OfficialCheckpointError(ValueError):
    """An official checkpoint that cannot be read or fits no preset: one line, expected vs found."""


@dataclass(frozen=True)
class OfficialWeights:
    """What an official file holds for us: the preset it fits and the weights under our names."""

    preset: str
    epoch: int | None
    state_dict: dict[str, Tensor]
    config: ModelConfig  # the preset's model settings, `pretrained="none"`: the weights are here

    def build(self) -> SeqTrack:
        """The model with these weights (strict load; built on the meta device, then assigned).

        In train mode like any fresh module: call `.eval()` for inference.
        """
        with torch.device("meta"):
            model = SeqTrack(self.config)
        model.load_state_dict(self.state_dict, strict=True, assign=True)
        if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
            raise RuntimeError("SeqTrack holds a tensor outside its state dict: build it off the meta device")
        return model


# ---------------------------------------------------------------- restricted reading of the file


class OfficialObject:
    """Inert stand-in for an object of the official training code (or any global not allowed).

    `find_class` returns a subclass per global name; pickle may call it (REDUCE), `__new__` it
    (NEWOBJ), `__setstate__` it (BUILD) or add items to it (SETITEMS/APPENDS/ADDITEMS). Every one of
    those only stores the data; nothing is looked up, imported or called.
    """

    source: ClassVar[str] = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> OfficialObject:
        obj = super().__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items = args, kwargs, None, []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Arguments were stored by `__new__`."""

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    def append(self, value: Any) -> None:
        self.items.append(value)

    def extend(self, values: list[Any]) -> None:
        self.items.extend(values)

    def add(self, value: Any) -> None:
        self.items.append(value)

    def __repr__(self) -> str:
        return f"<inert {self.source}>"


# The records below are NamedTuples: immutable, no `__dict__`, no `__setstate__`, so a later BUILD
# opcode in the pickle cannot rewrite a record after it was checked (a frozen slotted dataclass
# would not do: it gets a `__setstate__` that sets its fields).


class _StorageType(NamedTuple):
    """Stands for `torch.FloatStorage` etc. in a persistent id: only the dtype matters."""

    dtype: torch.dtype


class _StorageRef(NamedTuple):
    key: str
    dtype: torch.dtype
    numel: int


class TensorRef(NamedTuple):
    """A tensor record of the file, not yet read: where its bytes are and how they are laid out."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}


def _is_ints(values: Any) -> bool:
    return isinstance(values, tuple) and all(type(v) is int and v >= 0 for v in values)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_rest: Any) -> TensorRef:
    """Stands for torch's `_rebuild_tensor_v2`; requires_grad, hooks and metadata are dropped."""
    if not (isinstance(storage, _StorageRef) and type(offset) is int and offset >= 0):
        raise pickle.UnpicklingError("malformed tensor record")
    if not (_is_ints(size) and _is_ints(stride) and len(size) == len(stride)):
        raise pickle.UnpicklingError("malformed tensor record")
    return TensorRef(storage, offset, size, stride)


def _rebuild_parameter(data: Any, *_rest: Any) -> TensorRef:
    """Stands for torch's `_rebuild_parameter(_with_state)`: a Parameter is read as its tensor."""
    if not isinstance(data, TensorRef):
        raise pickle.UnpicklingError("malformed parameter record")
    return data


def _latin1_bytes(text: Any, encoding: Any = "latin1") -> bytes:
    """Stands for `_codecs.encode`, which protocol-2 pickles use for bytes (latin-1 only)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("malformed bytes record")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): _latin1_bytes,
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


def _python3_name(module: str, name: str) -> tuple[str, str]:
    """Protocol-2 pickles (torch.save's) name Python 2 modules, e.g. `__builtin__.set`; map them
    as pickle's own `find_class` does, so the table and the placeholder labels use one spelling.
    """
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose globals are the `_ALLOWED` table or inert placeholders, nothing else."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data), encoding="utf-8")
        self._placeholders: dict[tuple[str, str], type[OfficialObject]] = {}

    def find_class(self, module: str, name: str) -> Any:
        key = _python3_name(str(module), str(name))
        allowed = _ALLOWED.get(key)
        if allowed is not None:
            return allowed
        if key not in self._placeholders:
            self._placeholders[key] = type("OfficialObject", (OfficialObject,), {"source": ".".join(key)})
        return self._placeholders[key]

    def persistent_load(self, pid: Any) -> _StorageRef:
        """torch's persistent id ('storage', storage type, key, location, numel); location ignored."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage")):
            raise pickle.UnpicklingError("unknown persistent record")
        _, storage_type, key, _location, numel = pid
        key = key.decode("ascii") if isinstance(key, bytes) else key
        valid_key = isinstance(key, str) and re.fullmatch(r"\w+", key) is not None
        if not (isinstance(storage_type, _StorageType) and valid_key and type(numel) is int and numel >= 0):
            raise pickle.UnpicklingError("malformed storage record")
        return _StorageRef(key, storage_type.dtype, numel)


@dataclass(frozen=True)
class _Archive:
    path: Path
    prefix: str  # the archive folder inside the zip (torch names it after the file or "archive")
    byteorder: str


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _open_archive(path: Path) -> tuple[Any, _Archive]:
    """Unpickle `data.pkl` of a torch zip file with the restricted unpickler; tensors stay refs."""
    if not path.is_file():
        raise OfficialCheckpointError(f"official checkpoint {path} does not exist or is not a file")
    if not zipfile.is_zipfile(path):
        raise OfficialCheckpointError(
            f"{path} is not a torch zip file (torch.save since PyTorch 1.6); the legacy format is not read"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(names) != 1:
                raise OfficialCheckpointError(f"{path} is a zip file but not one written by torch.save")
            prefix = names[0].rsplit("/", 1)[0]
            byteorder = _read_byteorder(archive, prefix)
            obj = _RestrictedUnpickler(archive.read(names[0])).load()
    except OfficialCheckpointError:
        raise
    except Exception as exc:  # any malformed or hostile pickle: refuse in one line
        raise OfficialCheckpointError(
            f"cannot read {path}: {_one_line(f'{type(exc).__name__}: {exc}')}"
        ) from exc
    return obj, _Archive(path, prefix, byteorder)


def _read_byteorder(archive: zipfile.ZipFile, prefix: str) -> str:
    """torch writes `byteorder`; files without it are little-endian (torch's default on load)."""
    try:
        order = archive.read(f"{prefix}/byteorder").decode("ascii").strip()
    except KeyError:
        return "little"
    if order not in ("little", "big"):
        raise OfficialCheckpointError(f"unknown byte order {order!r} in the checkpoint")
    return order


def _materialise(refs: Mapping[str, TensorRef], archive: _Archive) -> dict[str, Tensor]:
    """Read the bytes of the given tensor records only; shares nothing with the file afterwards."""
    out: dict[str, Tensor] = {}
    with zipfile.ZipFile(archive.path) as zf:
        for name, ref in refs.items():
            out[name] = _read_tensor(zf, archive, ref, name)
    return out


def _read_tensor(zf: zipfile.ZipFile, archive: _Archive, ref: TensorRef, name: str) -> Tensor:
    storage = ref.storage
    nbytes = storage.numel * storage.dtype.itemsize
    # torch stores records uncompressed, so no genuine storage is larger than the file itself.
    if nbytes > archive.path.stat().st_size:
        raise OfficialCheckpointError(
            f"tensor {name}: storage {storage.key} claims more bytes than the file has"
        )
    data = bytearray(nbytes)
    try:
        with zf.open(f"{archive.prefix}/data/{storage.key}") as f:
            filled = _read_into(f, memoryview(data))
    except KeyError as exc:
        raise OfficialCheckpointError(
            f"tensor {name}: storage {storage.key} is missing from the file"
        ) from exc
    if filled != nbytes:
        raise OfficialCheckpointError(f"tensor {name}: storage {storage.key} is truncated")
    flat = torch.frombuffer(data, dtype=torch.uint8) if nbytes else torch.empty(0, dtype=torch.uint8)
    if archive.byteorder != sys.byteorder and storage.dtype.itemsize > 1:
        flat = flat.view(-1, storage.dtype.itemsize).flip(-1).reshape(-1)
    try:
        return torch.as_strided(flat.view(storage.dtype), ref.size, ref.stride, ref.offset)
    except (RuntimeError, TypeError, ValueError) as exc:  # as_strided checks the layout against the bytes
        raise OfficialCheckpointError(f"tensor {name}: {_one_line(str(exc))}") from exc


def _read_into(f: io.BufferedIOBase, view: memoryview) -> int:
    """Fill `view` from `f` without an intermediate copy; returns the bytes read."""
    filled = 0
    while filled < len(view):
        count = f.readinto(view[filled:])
        if not count:
            break
        filled += count
    return filled


# ---------------------------------------------------------------- names and shapes


def official_key(ours: str) -> str:
    """The official name of one of our state-dict keys (not the two position tables, see below)."""
    for pattern, replacement in _RENAMES:
        if pattern.match(ours):
            return pattern.sub(replacement, ours, count=1)
    raise KeyError(f"no official name for {ours!r}")


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
    """The official `net` under our names and shapes for `cfg` (check shapes first: `_mismatch`)."""
    num_search = cfg.search_grid**2
    out: dict[str, Tensor] = {}
    for key in _meta_state(cfg):
        if key == _POS_SEARCH:
            out[key] = net[_OFFICIAL_POS][:, :num_search].clone()
        elif key == _POS_TEMPLATE:
            out[key] = net[_OFFICIAL_POS][:, num_search:].clone()
        elif key == _MEMORY_POS:
            out[key] = net[_OFFICIAL_MEMORY_POS][0]
        else:
            out[key] = net[official_key(key)]
    return out


@functools.lru_cache(maxsize=16)
def _meta_state(cfg: ModelConfig) -> dict[str, Tensor]:
    """Our state dict for `cfg` on the meta device: names and shapes, no memory."""
    with torch.device("meta"):
        return dict(SeqTrack(cfg).state_dict())


@functools.lru_cache(maxsize=16)
def official_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Official key -> shape for a model built with `cfg` (the 200 tensors of B256, for instance)."""
    return {k: tuple(v.shape) for k, v in to_official_state_dict(_meta_state(cfg)).items()}


def _preset_config(name: str) -> ModelConfig:
    return dataclasses.replace(preset_settings(name)[0], pretrained="none")


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


def _preset_shapes(name: str) -> dict[str, tuple[int, ...]]:
    return official_shapes(_preset_config(name))


def infer_preset(shapes: Mapping[str, tuple[int, ...]]) -> str:
    """The official preset whose tensors have exactly these names and shapes; else one-line refusal."""
    fits = [name for name in OFFICIAL_PRESETS if _mismatch(shapes, _preset_shapes(name)) is None]
    if fits:
        return fits[0]
    expected = "; ".join(f"{name} ({_summary(_preset_shapes(name))})" for name in OFFICIAL_PRESETS)
    found = _summary(shapes)
    # Same width, depth and rows as a preset: name the tensor that still differs.
    detail = "".join(
        f"; against {name}: {_mismatch(shapes, _preset_shapes(name))}"
        for name in OFFICIAL_PRESETS
        if _summary(_preset_shapes(name)) == found
    )
    raise OfficialCheckpointError(
        f"official checkpoint fits no preset: expected one of {expected}; found {found}{detail}"
    )


def check_preset(shapes: Mapping[str, tuple[int, ...]], name: str) -> None:
    """Refuse in one line when the tensors do not fit the given preset."""
    if name not in PRESETS:
        raise OfficialCheckpointError(f"unknown preset {name!r}: choose one of {', '.join(sorted(PRESETS))}")
    expected = _preset_shapes(name)
    problem = _mismatch(shapes, expected)
    if problem is None:
        return
    fits = [n for n in OFFICIAL_PRESETS if _mismatch(shapes, _preset_shapes(n)) is None]
    hint = f"; the file fits preset {fits[0]}" if fits else ""
    raise OfficialCheckpointError(
        f"official checkpoint does not fit preset {name}: expected {_summary(expected)}, "
        f"found {_summary(shapes)} ({problem}){hint}"
    )


# ---------------------------------------------------------------- public entry points


def _net_of(obj: Any) -> Mapping[str, Any] | None:
    """The `net` state dict of an official container (or a bare official state dict), else None."""
    if not isinstance(obj, Mapping):
        return None
    net = obj.get("net", obj)
    if not isinstance(net, Mapping) or not all(isinstance(k, str) for k in net):
        return None
    if net and all(k.startswith("module.") for k in net):  # saved from a DataParallel wrapper
        net = {k.removeprefix("module."): v for k, v in net.items()}
    return net if all(k in net for k in _MARKER_KEYS) else None


def is_official_checkpoint(obj_or_path: Any) -> bool:
    """Whether a loaded object, or a file (read without its tensor data), is an official checkpoint."""
    if isinstance(obj_or_path, (str, os.PathLike)):
        try:
            obj_or_path, _ = _open_archive(Path(obj_or_path))
        except (OfficialCheckpointError, OSError):
            return False
    return _net_of(obj_or_path) is not None


def _as_float32(name: str, tensor: Tensor) -> Tensor:
    """The official weights are float32 (trained without AMP); a half-precision copy is widened."""
    if not tensor.is_floating_point():
        raise OfficialCheckpointError(f"net[{name!r}] holds {tensor.dtype}, expected floating-point weights")
    return tensor if tensor.dtype == torch.float32 else tensor.float()


def read_official(path: str | os.PathLike[str], preset: str | None = None) -> OfficialWeights:
    """Read an official SeqTrack file: its preset (inferred from the shapes unless given), epoch and
    weights under our names. Raises `OfficialCheckpointError` (one line) when it does not fit.
    """
    path = Path(path).expanduser()
    obj, archive = _open_archive(path)
    net = _net_of(obj)
    if net is None:
        found = ", ".join(map(str, list(obj)[:8])) if isinstance(obj, Mapping) else type(obj).__name__
        raise OfficialCheckpointError(
            f"{path} is not an official SeqTrack checkpoint: expected a dict with 'net' holding "
            f"{', '.join(_MARKER_KEYS)}; found {found}"
        )
    not_tensors = [k for k, v in net.items() if not isinstance(v, TensorRef)]
    if not_tensors:
        raise OfficialCheckpointError(f"{path}: net[{not_tensors[0]!r}] is not a tensor")
    shapes = {k: v.size for k, v in net.items()}
    name = infer_preset(shapes) if preset is None else preset
    check_preset(shapes, name)
    cfg = _preset_config(name)
    floats = {k: _as_float32(k, t) for k, t in _materialise(net, archive).items()}
    epoch = obj.get("epoch") if "net" in obj else None
    return OfficialWeights(
        name, epoch if type(epoch) is int else None, from_official_state_dict(floats, cfg), cfg
    )


__all__ = [
    "OFFICIAL_PRESETS",
    "OfficialCheckpointError",
    "OfficialObject",
    "OfficialWeights",
    "TensorRef",
    "check_preset",
    "from_official_state_dict",
    "infer_preset",
    "is_official_checkpoint",
    "official_key",
    "official_shapes",
    "read_official",
    "to_official_state_dict",
]
