"""A `torch.save` zip file, checked before anything in it is inflated or unpickled.

Both checkpoint readers start here: the restricted reader of official release files (`torch_zip`) and
`train.checkpoints.load`, before it hands the file to `torch.load(weights_only=True)`. A zip directory
says how big each member is and where it lies, so a compression bomb (a 1 KB member inflating to
1 GiB), a member that lies about its size, and members whose data overlap (one region read 400
times) are refused from the directory, before a byte is inflated. `data.pkl` is then read once, never
past its declared size, and its opcodes are scanned (`pickle_scan`) before any unpickler sees it.
"""

from __future__ import annotations

import contextlib
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from . import pickle_scan
from .pickle_scan import MAX_PICKLE_BYTES


class TorchZipError(ValueError):
    """A file that is not a readable torch zip, or a record in it that is malformed: one line."""


@dataclass(frozen=True)
class Archive:
    """Where an opened file's tensor bytes are: `materialise` reads them from here."""

    path: Path
    prefix: str  # the archive folder inside the zip (torch names it after the file or "archive")
    byteorder: str


# ---------------------------------------------------------------- the container, checked before reading

MAX_RATIO = 32  # a compressed member may inflate to 32x its stored bytes (torch.save stores, ratio 1)
MAX_DIRECTORY_BYTES = 8 << 20  # the central directory: ~80 bytes per member, a checkpoint has < 5000
_STORED_OR_DEFLATED = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_METHODS = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}


@dataclass(frozen=True)
class CheckedFile:
    """A torch zip whose directory passed `check_file` and whose `data.pkl` passed the opcode scan."""

    archive: Archive
    pickle: bytes


def check_file(path: Path) -> CheckedFile:
    """Check a torch zip before anything in it is inflated or unpickled, and read its `data.pkl` once.

    From the zip directory alone: its size, every member's compression method (stored or deflate,
    the only ones torch reads), declared size (data.pkl at most `MAX_PICKLE_BYTES`, a compressed member
    at most `MAX_RATIO` times its stored bytes) and place (inside the file, no two overlapping, so no
    byte is read twice). Then data.pkl is read with a reader that stops at its declared size, and its
    opcodes are scanned (`pickle_scan.scan`). Raises `TorchZipError` with the reason (no file name: the
    caller says which file and what to do); `zipfile.BadZipFile` or `OSError` for a damaged file.
    """
    with open_checked(path) as zf:
        names = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(names) != 1:
            raise TorchZipError("it is a zip file but not one written by torch.save (no data.pkl)")
        info = zf.getinfo(names[0])
        if info.file_size > MAX_PICKLE_BYTES:
            raise TorchZipError(
                f"data.pkl declares {info.file_size} bytes, more than {MAX_PICKLE_BYTES >> 20} MiB"
            )
        prefix = names[0].rsplit("/", 1)[0]
        byteorder = _read_byteorder(zf, prefix)
        data = bytes(read_member(zf, info))
    try:
        pickle_scan.scan(data)
    except pickle_scan.PickleScanError as exc:
        raise TorchZipError(f"data.pkl {exc}") from None
    return CheckedFile(Archive(path, prefix, byteorder), data)


@contextlib.contextmanager
def open_checked(path: Path) -> Iterator[zipfile.ZipFile]:
    """The zip, open, once its directory passed: size, methods, declared sizes, member ranges."""
    size = path.stat().st_size
    with path.open("rb") as f:
        directory = _directory_bytes(f, size)
        if directory > MAX_DIRECTORY_BYTES:
            raise TorchZipError(
                f"the zip directory is {directory} bytes, more than {MAX_DIRECTORY_BYTES >> 20} MiB"
            )
        with zipfile.ZipFile(f) as zf:
            _check_members(zf, f)
            yield zf


def _directory_bytes(f: BinaryIO, size: int) -> int:
    """The central directory's size as the end records declare it (both, where zip64 adds one),
    read before `zipfile` parses the directory into objects (~5x its bytes)."""
    f.seek(max(0, size - (22 + 0xFFFF)))
    tail = f.read()
    end = tail.rfind(b"PK\x05\x06")
    if end < 0 or len(tail) < end + 22:
        return 0  # not a zip: zipfile refuses it
    declared = struct.unpack_from("<L", tail, end + 12)[0]
    zip64 = end - 20 - 56
    if zip64 >= 0 and tail[zip64 : zip64 + 4] == b"PK\x06\x06":
        declared = max(declared, struct.unpack_from("<Q", tail, zip64 + 40)[0])
    return min(declared, size)


def _check_members(zf: zipfile.ZipFile, f: BinaryIO) -> None:
    """Method, declared sizes and data ranges of every member, from the directory and local headers."""
    infos = sorted(zf.infolist(), key=lambda i: i.header_offset)
    ends = [i.header_offset for i in infos[1:]] + [zf.start_dir]
    for info, limit in zip(infos, ends, strict=True):
        name = info.filename
        if info.compress_type not in _STORED_OR_DEFLATED:
            method = _METHODS.get(info.compress_type, f"method {info.compress_type}")
            raise TorchZipError(f"member {name} is compressed with {method}, which torch.save never writes")
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise TorchZipError(
                f"member {name} is stored but declares {info.file_size} bytes for {info.compress_size}"
            )
        if info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise TorchZipError(
                f"member {name} would inflate {info.compress_size} bytes to {info.file_size} "
                f"(more than {MAX_RATIO}x: a compression bomb)"
            )
        f.seek(info.header_offset)
        header = f.read(30)
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise TorchZipError(f"member {name} has no local header where the directory says")
        start = info.header_offset + 30 + sum(struct.unpack_from("<HH", header, 26))
        if start + info.compress_size > limit:
            raise TorchZipError(f"member {name} overlaps the next member or the directory")


_CHUNK = 1 << 20


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytearray:
    """The member's bytes, never more than its declared size: read in chunks (zipfile's own read-all
    inflates up to 2 GiB per call whatever the directory declares); zipfile checks the CRC at the end."""
    data = bytearray(info.file_size)
    view, filled = memoryview(data), 0
    with zf.open(info) as f:
        while filled < len(data):
            chunk = f.read(min(_CHUNK, len(data) - filled))
            if not chunk:
                raise TorchZipError(f"member {info.filename} ends before its declared {info.file_size} bytes")
            view[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
    return data


def _read_byteorder(zf: zipfile.ZipFile, prefix: str) -> str:
    """torch writes `byteorder`; files without it are little-endian (torch's default on load)."""
    try:
        info = zf.getinfo(f"{prefix}/byteorder")
    except KeyError:
        return "little"
    raw = bytes(read_member(zf, info)) if info.file_size <= 16 else b"?"
    order = raw.decode("ascii", "replace").strip()
    if order not in ("little", "big"):
        raise TorchZipError(f"unknown byte order {order!r} in the checkpoint")
    return order


__all__ = [
    "MAX_DIRECTORY_BYTES",
    "MAX_RATIO",
    "Archive",
    "CheckedFile",
    "TorchZipError",
    "check_file",
    "open_checked",
    "read_member",
]
