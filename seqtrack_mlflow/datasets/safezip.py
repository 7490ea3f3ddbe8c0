"""Unpack an untrusted zip safely: every member is checked before anything is written.

Extraction trusts nothing in the zip. Before anything is written, every member is checked:
- its path stays inside the target (no absolute path, no `..`, no symbolic link);
- its bytes are its own: the local header sits where the central directory says, and the data range
  (header offset + the local header's own length + compressed size) overlaps no other member's and
  ends before the central directory. Members sharing data would pass every ratio check (a stored
  member's ratio is 1.0) yet write the same bytes again and again: 400 overlapping stored members
  write ~400 MB from a 1 MB zip. zipfile refuses such entries itself only from Python 3.12 on.
- its compression ratio (declared size / compressed size) is plausible: at most `MAX_RATIO_JPEG` = 20
  for `.jpg`/`.jpeg` members and `MAX_RATIO_OTHER` = 100 for the rest, for members declaring more than
  `RATIO_CHECK_BYTES` = 1 MiB, and at most 20 for the whole archive once it declares more than
  `ARCHIVE_RATIO_CHECK_BYTES` = 64 MiB. JPEG is entropy-coded already: deflate gains 0-5% on a real
  LaSOT frame (ratio ~1.0; the hub's class zips are mostly stored), and even a flat synthetic frame
  stays far below 20. Text compresses ~3-10:1 (CSV boxes, prose), a repetitive log up to ~50:1; only
  LaSOT's 0/1 flag files go beyond (~200:1), and they are far below 1 MiB (20 KB for 10,000 frames), so
  the small-member exemption costs nothing, while a member of zeros deflates ~1000:1, a bomb's mark.
  A class zip is >95% JPEG bytes, hence the archive-wide bound of 20.
- the declared total (plus 4 KiB per member for file-system blocks) fits the free space of the target's
  file system while keeping `min(1 GiB, 10% of that file system)` free (room for a checkpoint: b256
  with its optimiser state is ~1.1 GB). zipfile stops each member at its declared size (a member whose
  data is longer fails its CRC), so the declared sizes bound what is written.
A corrupt member (bad CRC, broken deflate data, data ending early) or a disk that fills up anyway
(another writer) ends in one line naming the class zip; the partly extracted folder is removed.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import struct
import zipfile
import zlib
from itertools import pairwise
from pathlib import Path

from seqtrack_mlflow.fileio import is_disk_full
from seqtrack_mlflow.messages import collapsed

from .base import DataSourceError

_DRIVE = re.compile(r"^[A-Za-z]:")

MAX_RATIO_JPEG = 20.0  # declared / compressed size of a .jpg/.jpeg member (real JPEG: ~1.0)
MAX_RATIO_OTHER = 100.0  # of any other member (text: ~3-50)
RATIO_CHECK_BYTES = 1 << 20  # members declaring no more than this are not ratio-checked
ARCHIVE_RATIO_CHECK_BYTES = 64 << 20  # the whole archive's ratio is checked above this declared total
MAX_RATIO_ARCHIVE = MAX_RATIO_JPEG
BLOCK_BYTES = 4096  # file-system overhead counted per member
FREE_MARGIN_BYTES = 1 << 30  # left free after extraction, or FREE_MARGIN_FRACTION of a smaller disk
FREE_MARGIN_FRACTION = 0.10
# What a damaged member raises while it is read: CRC mismatch (BadZipFile), broken deflate/bzip2/lzma
# data (zlib.error, OSError, lzma.LZMAError), data ending early (EOFError).
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)


def cause_of(exc: BaseException, limit: int = 160) -> str:
    """`Type: message` on one line: which library error it was, beside the fix we name."""
    return f"{type(exc).__name__}: {collapsed(exc, limit) or type(exc).__name__}"


def _check_member(zip_path: Path, info: zipfile.ZipInfo) -> list[str]:
    """The member's path parts, or DataSourceError if it could write outside the target."""
    name = info.filename.replace("\\", "/")
    reason = None
    if name.startswith("/") or _DRIVE.match(name):
        reason = "is an absolute path"
    elif ".." in name.split("/"):
        reason = "contains '..'"
    elif stat.S_ISLNK(info.external_attr >> 16):
        reason = "is a symbolic link"
    if reason:
        raise DataSourceError(
            f"refusing to extract {zip_path}: member {info.filename!r} {reason}; "
            "the archive is unsafe, delete it and fetch again from a trusted source"
        )
    return [part for part in name.split("/") if part not in ("", ".")]


_LOCAL_SIGNATURE = b"PK\x03\x04"
_LOCAL_HEADER_BYTES = 30  # fixed part; the name and extra-field lengths are its last two fields
_LOCAL_NAME_LENGTHS = struct.Struct("<HH")  # at byte 26 of the local header


def _data_spans(zip_path: Path, infos: list[zipfile.ZipInfo]) -> list[tuple[int, int, str]]:
    """(first byte, end, name) of each member's local header + data, the way zipfile reads them
    (the header's own name and extra lengths), or DataSourceError where no local header is there."""
    spans = []
    with open(zip_path, "rb") as file:
        for info in infos:
            header = b""
            if info.header_offset >= 0:
                file.seek(info.header_offset)
                header = file.read(_LOCAL_HEADER_BYTES)
            if len(header) < _LOCAL_HEADER_BYTES or not header.startswith(_LOCAL_SIGNATURE):
                raise DataSourceError(
                    f"refusing to extract {zip_path}: member {info.filename!r} has no local header at byte "
                    f"{info.header_offset} where its directory entry points: the archive is damaged or "
                    "crafted; delete it and fetch again from a trusted source"
                )
            name_length, extra_length = _LOCAL_NAME_LENGTHS.unpack_from(header, 26)
            end = info.header_offset + _LOCAL_HEADER_BYTES + name_length + extra_length + info.compress_size
            spans.append((info.header_offset, end, info.filename))
    return spans


def _check_layout(zip_path: Path, archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> None:
    """DataSourceError if a member's bytes overlap another member's or the central directory."""
    spans = sorted(_data_spans(zip_path, infos))
    directory = getattr(archive, "start_dir", None)
    if directory is None:  # zipfile has always set it; the file's size still bounds the data
        directory = zip_path.stat().st_size
    for (start, end, name), (next_start, _, next_name) in pairwise(spans):
        if end > next_start:
            raise DataSourceError(
                f"refusing to extract {zip_path}: member {name!r} (bytes {start}-{end}) overlaps member "
                f"{next_name!r} (from byte {next_start}): overlapping members repeat the same bytes (a zip "
                "bomb) or the archive is damaged; delete it and fetch again from a trusted source"
            )
    if spans and spans[-1][1] > directory:
        start, end, name = spans[-1]
        raise DataSourceError(
            f"refusing to extract {zip_path}: member {name!r} (bytes {start}-{end}) runs into the central "
            f"directory at byte {directory}: the archive is damaged or crafted; delete it and fetch again "
            "from a trusted source"
        )


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # unreachable


def _ratio(info: zipfile.ZipInfo) -> float:
    return info.file_size / info.compress_size if info.compress_size else float("inf")


def _check_ratios(zip_path: Path, infos: list[zipfile.ZipInfo]) -> None:
    """DataSourceError if a member, or the whole archive, expands implausibly (module docstring)."""
    for info in infos:
        if info.is_dir() or info.file_size <= RATIO_CHECK_BYTES:
            continue
        jpeg = info.filename.lower().endswith((".jpg", ".jpeg"))
        limit = MAX_RATIO_JPEG if jpeg else MAX_RATIO_OTHER
        if _ratio(info) > limit:
            raise DataSourceError(
                f"refusing to extract {zip_path}: member {info.filename!r} expands "
                f"{_size(info.compress_size)} -> {_size(info.file_size)} ({_ratio(info):.0f}:1, "
                f"over the {limit:.0f}:1 plausible for {'JPEG' if jpeg else 'a non-JPEG member'}): "
                "a zip bomb or a damaged archive; delete it and fetch again from a trusted source"
            )
    declared = sum(info.file_size for info in infos)
    compressed = sum(info.compress_size for info in infos)
    ratio = declared / compressed if compressed else float("inf")
    if declared > ARCHIVE_RATIO_CHECK_BYTES and ratio > MAX_RATIO_ARCHIVE:
        raise DataSourceError(
            f"refusing to extract {zip_path}: its members expand {_size(compressed)} -> {_size(declared)} "
            f"({ratio:.0f}:1, over the {MAX_RATIO_ARCHIVE:.0f}:1 plausible for a LaSOT class zip): "
            "a zip bomb or a damaged archive; delete it and fetch again from a trusted source"
        )


def _existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _check_free_space(zip_path: Path, infos: list[zipfile.ZipInfo], target: Path) -> None:
    """DataSourceError if the declared total does not fit the target's disk with the margin left."""
    need = sum(info.file_size + BLOCK_BYTES for info in infos)
    where = _existing(target)
    usage = shutil.disk_usage(where)
    margin = min(FREE_MARGIN_BYTES, int(FREE_MARGIN_FRACTION * usage.total))
    if need + margin > usage.free:
        raise DataSourceError(
            f"refusing to extract {zip_path}: it declares {_size(need)} but {where} has {_size(usage.free)} "
            f"free and {_size(margin)} must stay free: free disk space or set -P cache_dir to a larger disk"
        )


def _remove_new(target: Path, existed: set[str] | None) -> None:
    """Remove what an extraction created: the whole target if it is new, else its new entries."""
    if existed is None:
        shutil.rmtree(target, ignore_errors=True)
        return
    for name in set(os.listdir(target)) - existed:
        path = target / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def safe_extract(zip_path: Path, target: Path) -> None:
    """Extract every member under `target`. ALL members are checked first (paths, data ranges,
    compression ratios, free space), so a refused zip writes nothing; a corrupt member or a full disk
    ends in one DataSourceError naming the zip, with what was extracted removed again."""
    zip_path, target = Path(zip_path), Path(target)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataSourceError(
            f"{zip_path} is not a readable zip file ({cause_of(exc, 80)}): delete it and fetch again"
        ) from None
    with archive:
        infos = archive.infolist()
        members = [(info, _check_member(zip_path, info)) for info in infos]
        _check_layout(zip_path, archive, infos)
        _check_ratios(zip_path, infos)
        _check_free_space(zip_path, infos, target)
        top = target
        while not top.parent.exists() and top.parent != top:
            top = top.parent  # the outermost folder this extraction creates
        existed = set(os.listdir(target)) if target.is_dir() else None
        current = ""
        try:
            target.mkdir(parents=True, exist_ok=True)
            for info, parts in members:
                if not parts:
                    continue
                current = info.filename
                dest = target.joinpath(*parts)
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        except (*_CORRUPT, OSError) as exc:
            if existed is None and top != target:
                shutil.rmtree(top, ignore_errors=True)
            else:
                _remove_new(target, existed)
            if is_disk_full(exc):
                raise DataSourceError(
                    f"disk full while extracting {zip_path} into {target} ({cause_of(exc, 80)}): "
                    "the partial extraction was removed; free disk space or set -P cache_dir to a larger disk"
                ) from None
            if isinstance(exc, OSError) and exc.errno is not None:  # else a decompressor's OSError
                raise DataSourceError(
                    f"cannot extract {zip_path} into {target} ({cause_of(exc, 80)}): "
                    "the partial extraction was removed; check the folder's permissions and space"
                ) from None
            raise DataSourceError(
                f"{zip_path} is damaged: member {current!r} fails to decompress ({cause_of(exc, 80)}): "
                f"delete {zip_path.resolve()} and fetch again"
            ) from None


__all__ = [
    "MAX_RATIO_JPEG",
    "MAX_RATIO_OTHER",
    "RATIO_CHECK_BYTES",
    "cause_of",
    "safe_extract",
]
