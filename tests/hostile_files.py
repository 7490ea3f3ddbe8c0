"""Builders of hostile checkpoint files, written byte for byte: the pickles, the zips and their directories.

Used by tests/test_hostile_checkpoints.py; each builder makes the file an attacker (or a broken tool)
would hand to `evaluate --checkpoint`: nested-tuple keys, a memo bomb, compression bombs (honest and
lying directories), many views of one storage, a config far bigger than its weights.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

PROTO2 = b"\x80\x02"


def nested_key_pickle(depth: int, marks: bool = True) -> bytes:
    """{((((),),),): None} with the key nested `depth` deep: MARK..TUPLE pairs, or TUPLE1 chains
    (which nest without growing the unpickler's stack)."""
    key = b"(" * depth + b")" + b"t" * depth if marks else b")" + b"\x85" * depth
    return PROTO2 + b"}" + key + b"Ns."


def memo_bomb_pickle(index: int = 2**27) -> bytes:
    """None, stored under memo index `index` (LONG_BINPUT): CPython grows its memo list to the index."""
    return PROTO2 + b"Nr" + struct.pack("<I", index) + b"."


@dataclass(frozen=True)
class Member:
    """One zip member as written: `payload` is the stored (possibly compressed) bytes; `size` and `crc`
    are what the directory declares (defaults: the honest values for a stored member)."""

    name: str
    payload: bytes
    method: int = zipfile.ZIP_STORED
    size: int | None = None
    crc: int | None = None


def _headers(name: bytes, method: int, crc: int, stored: int, size: int, offset: int) -> tuple[bytes, bytes]:
    """A member's local header and central directory entry."""
    fields = (method, 0, 0x21, crc, stored, size, len(name))
    local = struct.pack("<4s3H2H3L2H", b"PK\x03\x04", 20, 0, *fields, 0) + name
    entry = struct.pack("<4s4H2H3L5H2L", b"PK\x01\x02", 20, 20, 0, *fields, 0, 0, 0, 0, 0, offset) + name
    return local, entry


def _finish(path: Path, out: bytes, central: bytes, count: int) -> Path:
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(central), len(out), 0)
    path.write_bytes(out + central + eocd)
    return path


def write_zip(path: Path, members: list[Member]) -> Path:
    """A zip written by hand, so the directory can say what the attacker wants (sizes, methods)."""
    out, central = bytearray(), bytearray()
    for m in members:
        size = len(m.payload) if m.size is None else m.size
        crc = zlib.crc32(m.payload) if m.crc is None else m.crc
        local, entry = _headers(m.name.encode(), m.method, crc, len(m.payload), size, len(out))
        out += local + m.payload
        central += entry
    return _finish(path, bytes(out), bytes(central), len(members))


def torch_members(path: Path) -> list[Member]:
    """The members of a file written by torch.save (the layout its reader expects), as `Member`s."""
    with zipfile.ZipFile(path) as zf:
        return [Member(i.filename, zf.read(i)) for i in zf.infolist()]


def with_pickle(template: Path, pickle_bytes: bytes, path: Path, **member: object) -> Path:
    """`template` (a torch.save file) with its data.pkl replaced (stored, or as `member` says)."""
    members = torch_members(template)
    out = []
    for m in members:
        if m.name.endswith("/data.pkl"):
            m = Member(m.name, pickle_bytes, **member)  # type: ignore[arg-type]
        out.append(m)
    return write_zip(path, out)


def deflate_bomb(head: bytes, zeros: int) -> bytes:
    """A raw deflate stream of `head` then `zeros` zero bytes (a multiple of 1 MiB), built in
    milliseconds: after a full flush every MiB of zeros is the same run of blocks."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    return first + block * (zeros >> 20) + c.flush()


def _zero_chunks(zeros: int) -> Iterator[bytes]:
    chunk = bytes(1 << 20)
    for _ in range(zeros >> 20):
        yield chunk


def bzip2_bomb(head: bytes, zeros: int) -> bytes:
    c = bz2.BZ2Compressor(9)
    return c.compress(head) + b"".join(c.compress(z) for z in _zero_chunks(zeros)) + c.flush()


def lzma_bomb(head: bytes, zeros: int) -> bytes:
    """Zip's LZMA member format: a 4-byte header, the filter properties, then a raw LZMA1 stream."""
    lzma_filter = {"id": lzma.FILTER_LZMA1, "preset": 0}
    props = lzma._encode_filter_properties(lzma_filter)  # what zipfile itself writes
    c = lzma.LZMACompressor(lzma.FORMAT_RAW, filters=[lzma_filter])
    body = c.compress(head) + b"".join(c.compress(z) for z in _zero_chunks(zeros)) + c.flush()
    return struct.pack("<BBH", 9, 4, len(props)) + props + body


BOMBS = {zipfile.ZIP_DEFLATED: deflate_bomb, zipfile.ZIP_BZIP2: bzip2_bomb, zipfile.ZIP_LZMA: lzma_bomb}
EMPTY_DICT = PROTO2 + b"}."  # a valid pickle: what the reader sees first


def compression_bomb(template: Path, path: Path, method: int, zeros: int, honest: bool = True) -> Path:
    """`template` whose data.pkl is `{}` then `zeros` zero bytes (after STOP: never unpickled),
    compressed with `method`. `honest=False`: the directory declares only the pickle's 4 bytes."""
    crc = zlib.crc32(EMPTY_DICT)
    for chunk in _zero_chunks(zeros if honest else 0):
        crc = zlib.crc32(chunk, crc)
    size = len(EMPTY_DICT) + zeros if honest else len(EMPTY_DICT)
    payload = BOMBS[method](EMPTY_DICT, zeros)
    return with_pickle(template, payload, path, method=method, size=size, crc=crc)


def shared_storage_official(path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    """An official-format file whose every tensor is a view of one storage (the largest tensor's)."""
    numels = {k: int(torch.Size(s).numel()) for k, s in shapes.items()}
    base = torch.zeros(max(numels.values()))
    net = {k: base[: numels[k]].view(s) for k, s in shapes.items()}
    torch.save({"net": net, "epoch": 1}, path)
    return path


def overlapping_storages(template: Path, path: Path, count: int, kernel: int) -> Path:
    """`template` plus `count` stored storage members whose data overlap: member i's data is member
    i+1's local header and everything after it, so reading them all reads `kernel` bytes `count` times
    (each member's sizes and CRC are honest)."""
    members = torch_members(template)
    prefix = members[0].name.split("/")[0]
    out, central = bytearray(), bytearray()
    for m in members:
        local, entry = _headers(
            m.name.encode(), 0, zlib.crc32(m.payload), len(m.payload), len(m.payload), len(out)
        )
        out += local + m.payload
        central += entry
    data, chain = bytes(kernel), []
    for i in reversed(range(count)):  # built from the last member, whose data is the kernel
        name = f"{prefix}/data/{i}".encode()
        chain.append((name, zlib.crc32(data), len(data)))
        data = _headers(name, 0, chain[-1][1], len(data), len(data), 0)[0] + data
    offset = len(out)
    out += data
    for name, crc, size in reversed(chain):
        central += _headers(name, 0, crc, size, size, offset)[1]
        offset += 30 + len(name)
    return _finish(path, bytes(out), bytes(central), len(members) + count)
