"""Read a `torch.save` zip file without running any of its code: a restricted unpickler and tensor refs.

Files from elsewhere (the official SeqTrack releases, for one) hold pickled objects of foreign code,
so `torch.load(weights_only=True)` refuses them and a plain `torch.load` would import and run that
code. This module reads the zip container itself:

- the file is checked first (`torch_file.check_file`): zip directory (no compression bomb, no
  overlapping members) and data.pkl's opcodes (no nesting that crashes CPython, no memo bomb);
- `data.pkl` is unpickled by `_RestrictedUnpickler`, whose `find_class` (the hook the Python docs
  recommend for "restricting globals") resolves only our own tensor-record functions, the storage
  type markers, OrderedDict/set/frozenset and latin-1 bytes; every other global becomes an inert
  `InertObject` subclass whose construction, `__setstate__` and item/append calls only store data.
  Nothing from the file can reach a callable that acts: the only callables the pickle can obtain are
  the ones `find_class` returns.
- tensors are first read as `TensorRef` records (storage key, dtype, offset, size, stride), so a
  caller checks the shapes before any tensor data is read; `materialise` then reads only the tensors
  it is given, each storage once (views of one storage share it), with `torch.frombuffer` +
  `torch.as_strided`, after checking each layout against its storage.

Why not `torch.load(..., weights_only=False, pickle_module=restricted)`: `torch.load` then hands a
TorchScript archive to `torch.jit.load` (which runs its code), uses `pickle_module.load` on several
records for the legacy formats, wraps `pickle_module.Unpickler` in a private class that changes
across versions, and `TORCH_FORCE_WEIGHTS_ONLY_LOAD` makes it refuse `pickle_module`. Reading the
zip (`<archive>/data.pkl` + `<archive>/data/<key>` + `<archive>/byteorder`, the format `torch.save`
has written since PyTorch 1.6) needs only `zipfile`, `pickle` and public tensor functions. The legacy
pre-1.6 format is refused.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import re
import sys
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor

from ..messages import collapsed
from .torch_file import Archive, TorchZipError, check_file, open_checked, read_member


class InertObject:
    """Inert stand-in for an object of foreign code (any global the reader does not allow).

    `find_class` returns a subclass per global name; pickle may call it (REDUCE), `__new__` it
    (NEWOBJ), `__setstate__` it (BUILD) or add items to it (SETITEMS/APPENDS/ADDITEMS). Every one of
    those only stores the data; nothing is looked up, imported or called.
    """

    source: ClassVar[str] = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> InertObject:
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
        self._placeholders: dict[tuple[str, str], type[InertObject]] = {}

    def find_class(self, module: str, name: str) -> Any:
        key = _python3_name(str(module), str(name))
        allowed = _ALLOWED.get(key)
        if allowed is not None:
            return allowed
        if key not in self._placeholders:
            self._placeholders[key] = type("InertObject", (InertObject,), {"source": ".".join(key)})
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


def open_archive(path: Path) -> tuple[Any, Archive]:
    """Unpickle `data.pkl` of a torch zip file with the restricted unpickler; tensors stay refs.

    The file is checked first (`check_file`): nothing is inflated or unpickled before the directory
    and the pickle's opcodes passed."""
    if not path.is_file():
        raise TorchZipError(f"{path} does not exist or is not a file")
    if not zipfile.is_zipfile(path):
        raise TorchZipError(
            f"{path} is not a torch zip file (torch.save since PyTorch 1.6); the legacy format is not read"
        )
    try:
        checked = check_file(path)
    except TorchZipError as exc:
        raise TorchZipError(
            f"cannot read {path}: {exc} (refused before unpickling): not a file as torch.save "
            "writes them; download it again from its release"
        ) from None
    except Exception as exc:  # a damaged zip (CRC, truncated member)
        raise TorchZipError(f"cannot read {path}: {_describe(exc)}") from None
    try:
        obj = _RestrictedUnpickler(checked.pickle).load()
    except Exception as exc:  # any malformed or hostile pickle: refuse in one line
        raise TorchZipError(f"cannot read {path}: {_describe(exc)}") from None
    return obj, checked.archive


def _describe(exc: BaseException) -> str:
    """`Type: message` on one line; a message that cannot be built (a RecursionError in a repr) is
    replaced by the type's name."""
    try:
        return collapsed(f"{type(exc).__name__}: {exc}")
    except RecursionError:
        return type(exc).__name__


# ---------------------------------------------------------------- tensor data


def materialise(refs: Mapping[str, TensorRef], archive: Archive) -> dict[str, Tensor]:
    """Read the bytes of the given tensor records only, each storage once: records viewing the same
    storage share its memory (as `torch.load`'s do) instead of each copying all of it. Nothing is
    shared with the file afterwards."""
    storages = _Storages(archive)
    try:
        with open_checked(archive.path) as zf:
            return {name: storages.view(zf, ref, name) for name, ref in refs.items()}
    except TorchZipError as exc:
        raise TorchZipError(f"cannot read {archive.path}: {exc}") from None
    except Exception as exc:  # a damaged zip (CRC, truncated member), or the file changed since
        raise TorchZipError(f"cannot read {archive.path}: {_describe(exc)}") from None


class _Storages:
    """The storages read so far: raw bytes per key, and typed (byte-swapped where needed) per dtype."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.file_size = archive.path.stat().st_size
        self.raw: dict[str, Tensor] = {}
        self.typed: dict[tuple[str, torch.dtype], Tensor] = {}

    def view(self, zf: zipfile.ZipFile, ref: TensorRef, name: str) -> Tensor:
        storage = ref.storage
        itemsize = storage.dtype.itemsize
        # torch stores records uncompressed, so no genuine storage is larger than the file itself.
        if storage.numel * itemsize > self.file_size:
            raise TorchZipError(f"tensor {name}: storage {storage.key} claims more bytes than the file has")
        raw = self._raw(zf, storage.key, name)
        if storage.numel * itemsize > raw.numel():
            raise TorchZipError(f"tensor {name}: storage {storage.key} is truncated")
        last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
        if all(ref.size) and last >= storage.numel:
            raise TorchZipError(f"tensor {name}: its layout reaches past storage {storage.key}")
        typed = self.typed.get((storage.key, storage.dtype))
        if typed is None:
            usable = raw[: raw.numel() // itemsize * itemsize]
            if self.archive.byteorder != sys.byteorder and itemsize > 1:
                usable = usable.view(-1, itemsize).flip(-1).reshape(-1)
            typed = self.typed[(storage.key, storage.dtype)] = usable.view(storage.dtype)
        try:
            return torch.as_strided(typed, ref.size, ref.stride, ref.offset)
        except (RuntimeError, TypeError, ValueError) as exc:  # as_strided checks the layout too
            raise TorchZipError(f"tensor {name}: {collapsed(exc)}") from exc

    def _raw(self, zf: zipfile.ZipFile, key: str, name: str) -> Tensor:
        if key not in self.raw:
            try:
                info = zf.getinfo(f"{self.archive.prefix}/data/{key}")
            except KeyError as exc:
                raise TorchZipError(f"tensor {name}: storage {key} is missing from the file") from exc
            data = read_member(zf, info)
            empty = torch.empty(0, dtype=torch.uint8)
            self.raw[key] = torch.frombuffer(data, dtype=torch.uint8) if data else empty
        return self.raw[key]


__all__ = [
    "Archive",
    "InertObject",
    "TensorRef",
    "TorchZipError",
    "materialise",
    "open_archive",
]
