"""The one-line message helper and the atomic writer every part of the package uses."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from seqtrack_mlflow.fileio import atomic_write, atomic_write_text, is_disk_full
from seqtrack_mlflow.messages import collapsed, first_line


def test_first_line_keeps_the_first_non_blank_line_and_cuts_long_ones() -> None:
    assert (
        first_line(RuntimeError("\n  boom: the server said no\ntraceback...\n")) == "boom: the server said no"
    )
    assert first_line(KeyError()) == "KeyError"
    long = first_line(ValueError("x" * 500), limit=50)
    assert len(long) == 50 and long.endswith("...")


def test_collapsed_folds_white_space() -> None:
    assert collapsed("a\n  b\tc") == "a b c"
    assert collapsed("word " * 40, limit=20).endswith("...")


def test_atomic_write_replaces_whole_or_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "file.txt"
    atomic_write_text(path, "first")
    assert path.read_text() == "first"

    def half_then_fail(f) -> None:
        f.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as info:
        atomic_write(path, half_then_fail)
    assert is_disk_full(info.value)
    assert path.read_text() == "first"
    assert [p.name for p in path.parent.iterdir()] == ["file.txt"]  # no temporary file left behind
