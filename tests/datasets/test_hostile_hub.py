"""Hostile zips for the hub's safe extraction: members whose data overlap (issue 20, case 8).

The zips are built byte by byte here: one stored member's data shared by many directory entries, and
David Fifield's "quoted" layout where each stored member's data is every later member's header and data
(each ratio 1.0, so the ratio checks cannot see it). Python 3.11's zipfile extracts both happily.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pytest
from services import FakeHub, point_hub_at

from seqtrack_mlflow.datasets.base import DataSourceError
from seqtrack_mlflow.datasets.hub import fetch_lasot_classes, safe_extract


def _local_header(name: bytes, crc: int, size: int) -> bytes:
    return struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, size, size, len(name), 0) + name


def _directory_entry(name: bytes, crc: int, size: int, offset: int) -> bytes:
    mode = 0o100644 << 16
    fields = (b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc, size, size, len(name), 0, 0, 0, 0, mode, offset)
    return struct.pack("<4s6H3L5H2L", *fields) + name


def _finish(body: bytes, entries: list[bytes]) -> bytes:
    directory = b"".join(entries)
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory), len(body), 0
    )
    return body + directory + end


def shared_data_zip(kernel: bytes, count: int, name: bytes = b"bear-1/img/00000001.jpg") -> bytes:
    """One local file; `count` directory entries all pointing at it."""
    crc = zlib.crc32(kernel)
    body = _local_header(name, crc, len(kernel)) + kernel
    return _finish(body, [_directory_entry(name, crc, len(kernel), 0) for _ in range(count)])


def quoted_overlap_zip(kernel: bytes, count: int) -> bytes:
    """`count` stored members; member k's data is the headers of members k+1.. plus the kernel, so the
    ranges overlap partially and each member declares ratio 1.0 (valid CRCs: zipfile extracts it)."""
    names = [f"bear-1/img/{k + 1:08d}.jpg".encode() for k in range(count)]
    suffix, sizes = kernel, []
    for name in reversed(names):
        sizes.append((zlib.crc32(suffix), len(suffix)))
        suffix = _local_header(name, *sizes[-1]) + suffix
    sizes.reverse()
    entries, offset = [], 0
    for name, (crc, size) in zip(names, sizes, strict=True):
        entries.append(_directory_entry(name, crc, size, offset))
        offset += 30 + len(name)
    return _finish(suffix, entries)


def _refusal(zip_path: Path, target: Path, *parts: str) -> str:
    with pytest.raises(DataSourceError) as info:
        safe_extract(zip_path, target)
    message = str(info.value)
    assert "\n" not in message and str(zip_path) in message and "fetch again" in message, message
    for part in parts:
        assert part in message, message
    assert not target.exists() and not target.parent.exists()  # nothing written, not even a folder
    return message


def test_crafted_zips_are_valid_for_zipfile(tmp_path):
    """The hostile inputs are real: zipfile itself reads every member with a good CRC (3.11 does)."""
    for data in (shared_data_zip(os.urandom(500), 3), quoted_overlap_zip(os.urandom(500), 3)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if sys.version_info < (3, 12):
                assert archive.testzip() is None
                assert sum(len(archive.read(i)) for i in archive.infolist()) > len(data)  # more out than in
            assert sum(i.compress_size for i in archive.infolist()) > len(data)  # the data is shared


def test_one_local_file_under_many_directory_entries_is_refused(tmp_path):
    zip_path = tmp_path / "bear.zip"
    zip_path.write_bytes(shared_data_zip(os.urandom(256 << 10), 400))
    _refusal(zip_path, tmp_path / "out" / "t", "'bear-1/img/00000001.jpg'", "overlaps", "zip bomb")


def test_partially_overlapping_members_are_refused(tmp_path):
    zip_path = tmp_path / "bear.zip"
    zip_path.write_bytes(quoted_overlap_zip(os.urandom(64 << 10), 100))
    message = _refusal(zip_path, tmp_path / "out" / "t", "overlaps member 'bear-1/img/00000002.jpg'")
    assert "'bear-1/img/00000001.jpg' (bytes 0-" in message


def test_data_running_into_the_central_directory_is_refused(tmp_path):
    kernel = os.urandom(1000)
    name = b"bear-1/groundtruth.txt"
    body = _local_header(name, zlib.crc32(kernel), len(kernel)) + kernel
    zip_path = tmp_path / "bear.zip"
    zip_path.write_bytes(_finish(body, [_directory_entry(name, zlib.crc32(kernel), len(kernel) + 40, 0)]))
    _refusal(zip_path, tmp_path / "out" / "t", "runs into the central directory", repr(name.decode()))


def test_entry_pointing_into_another_members_data_is_refused(tmp_path):
    kernel = b"\x00" * 30 + os.urandom(1000)  # no local header signature where the second entry points
    name = b"bear-1/a.jpg"
    crc = zlib.crc32(kernel)
    body = _local_header(name, crc, len(kernel)) + kernel
    entries = [_directory_entry(name, crc, len(kernel), 0), _directory_entry(b"bear-1/b.jpg", crc, 10, 60)]
    zip_path = tmp_path / "bear.zip"
    zip_path.write_bytes(_finish(body, entries))
    _refusal(zip_path, tmp_path / "out" / "t", "'bear-1/b.jpg' has no local header at byte 60")


class _Unseekable(io.RawIOBase):
    """A write-only stream: zipfile then writes data descriptors after each member (flag bit 3)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.buffer += data
        return len(data)


@pytest.mark.parametrize("layout", ["plain", "prefixed", "streamed", "zip64"])
def test_ordinary_layouts_still_extract(tmp_path, layout):
    members = {
        "bear-1/": b"",
        "bear-1/img/00000001.jpg": os.urandom(3000),
        "bear-1/groundtruth.txt": b"1,2,3,4\n",
    }
    stream: io.BytesIO | _Unseekable = _Unseekable() if layout == "streamed" else io.BytesIO()
    with zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(
                zipfile.ZipInfo(name), data, zipfile.ZIP_STORED if name.endswith(".jpg") else None
            )
        if layout == "zip64":
            with archive.open("bear-1/nlp.txt", "w", force_zip64=True) as member:
                member.write(b"a bear\n")
            members["bear-1/nlp.txt"] = b"a bear\n"
    data = bytes(stream.buffer) if isinstance(stream, _Unseekable) else stream.getvalue()
    if layout == "prefixed":  # a self-extractor's stub before the zip: zipfile shifts every offset
        data = b"#!/bin/sh\nexit 0\n" + data
    zip_path = tmp_path / "bear.zip"
    zip_path.write_bytes(data)
    safe_extract(zip_path, tmp_path / "t")
    for name, content in members.items():
        if not name.endswith("/"):
            assert (tmp_path / "t" / name).read_bytes() == content


_MEASURE = """
# VmHWM, this process's own peak: ru_maxrss would carry the pytest parent's peak across fork + exec.
def peak_kib():
    return int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
import json, os, sys, time
from pathlib import Path
from seqtrack_mlflow.datasets.base import DataSourceError
from seqtrack_mlflow.datasets.hub import safe_extract
zip_path, target = Path(sys.argv[1]), Path(sys.argv[2])
before = peak_kib()
start = time.perf_counter()
try:
    safe_extract(zip_path, target)
    outcome = "extracted"
except DataSourceError as exc:
    outcome = str(exc)
written = sum(f.stat().st_size for f in target.rglob("*") if f.is_file()) if target.exists() else 0
peak = peak_kib()
print(json.dumps({"outcome": outcome, "seconds": time.perf_counter() - start, "written": written,
                  "rss_growth_kib": peak - before}))
"""


def test_the_issue_zip_is_refused_at_baseline_memory_and_disk(tmp_path):
    """The reported zip: 400 overlapping stored members, 1.1 MB, that wrote 424 MB; in its own process."""
    zip_path = tmp_path / "bear.zip"
    zip_path.write_bytes(quoted_overlap_zip(os.urandom(1 << 20), 400))
    assert zip_path.stat().st_size < 1_200_000
    with zipfile.ZipFile(zip_path) as archive:
        assert sum(i.file_size for i in archive.infolist()) > 400_000_000  # what it would write
    target = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(zip_path), str(target)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout)
    assert "overlaps member" in result["outcome"] and "\n" not in result["outcome"]
    assert result["written"] == 0 and not target.exists()
    assert result["rss_growth_kib"] < 16 << 10  # the check reads 30 bytes per member, not the data
    assert result["seconds"] < 5


def test_overlapping_zip_from_the_hub_publishes_nothing(source_free_hub, tmp_path):
    source_free_hub.files["bear.zip"] = quoted_overlap_zip(os.urandom(64 << 10), 50)
    cache = tmp_path / "cache"
    with pytest.raises(DataSourceError, match=r"bear\.zip: member 'bear-1/img/00000001\.jpg' .* overlaps"):
        fetch_lasot_classes(["bear"], cache)
    assert not (cache / "lasot" / "bear").exists()
    assert not (cache / "lasot.tmp").exists() or not list((cache / "lasot.tmp").iterdir())


@pytest.fixture
def source_free_hub(monkeypatch, tmp_path):
    """test_hub's local Hugging Face endpoint, serving only what a test puts into `files`."""
    server = FakeHub({})
    point_hub_at(monkeypatch, tmp_path, server.url)
    yield server
    server.close()
