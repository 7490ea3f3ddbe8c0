"""Writing files so that a reader never sees half of one, and naming a full disk as such."""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

# A full disk, a full quota, a file over the file system's size limit: the fix is the same (free room
# or write elsewhere), so every writer names them together.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def atomic_write(path: Path, write: Callable[[BinaryIO], None], *, fsync: bool = False) -> Path:
    """Write through `write(file)` into a private temporary file beside `path`, then rename it over
    `path` (atomic on POSIX): a concurrent reader sees the old file or the new one, never a part. On any
    failure the temporary file is removed and `path` is left as it was; the error propagates.
    `fsync`: flush to the device before the rename (files a crash must not lose, e.g. checkpoints)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique hidden name beside `path` (same file system: the rename is atomic), opened exclusively;
    # permissions follow the umask like any new file.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str, *, fsync: bool = False) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")), fsync=fsync)
