"""LaSOT-format annotation files: `groundtruth.txt` boxes and the 0/1 flag files, read with bounds.

A sequence's annotations describe its frames, so their size is bounded by the frame images it has:
a ground-truth file may hold at most `frames + LINE_MARGIN` lines of at most `MAX_LINE_BYTES` bytes
(a LaSOT line is ~15 bytes; four 17-digit floats with separators stay under 100), a flag file at most
`MAX_FLAG_BYTES` per box. A larger file is refused from its size before a byte is read, one with too
many lines before any number is parsed: a 10^7-line file once took 29 s and 3.4 GB to be refused.
The margin lets a sequence missing a few images reach the per-frame check that names the first one.

Values are parsed by numpy's text reader in one pass (`np.fromstring`): for every token it reads
whole it gives the bits `float(token)` gives. Text it does not read (`1_000`, non-ASCII digits,
which Python's float accepts) falls back to the former conversion (numpy's str cast, float() of each
token), so the files accepted and the values read stay exactly what they were. A bad file raises
`DatasetFormatError` with one line naming the file and the line.
"""

from __future__ import annotations

import os
import re
import stat
import warnings
from pathlib import Path

import numpy as np

from .base import DatasetFormatError

LINE_MARGIN = 64  # ground-truth lines allowed beyond the frame images present
MAX_LINE_BYTES = 256  # per allowed ground-truth line
MAX_FLAG_BYTES = 16  # per flag (LaSOT writes 2: "0,")
SLACK_BYTES = 4096  # a BOM, trailing blank lines, a missing last newline

# LaSOT files are comma separated; some tools write tabs or spaces, so any run of them separates values.
_SEPARATORS = re.compile(r"[ \t,]+")
_LINE_EDGE = re.compile(r" ?\n ?")
_FOUR_COLUMNS = re.compile(r"(?:[^ \n]+ [^ \n]+ [^ \n]+ [^ \n]+\n)*")
_REDOWNLOAD = "restore or re-download this sequence"


def read_bounded(path: Path, limit: int, what: str) -> str:
    """The file's text (UTF-8, BOM dropped), or one line if it is missing, not a regular file, not
    text, or over `limit` bytes (`what` says why that is the limit) - the size is checked first."""
    try:  # O_NONBLOCK: a FIFO in place of the file must not hang the open
        with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise DatasetFormatError(f"{path}: not a regular file: {_REDOWNLOAD}")
            if info.st_size > limit:
                raise DatasetFormatError(
                    f"{path}: {info.st_size} bytes, over the {limit} allowed for {what}: {_REDOWNLOAD}"
                )
            data = file.read(limit + 1)  # the file may grow after the check
    except FileNotFoundError:
        raise DatasetFormatError(f"{path}: file is missing: {_REDOWNLOAD}") from None
    except IsADirectoryError:
        raise DatasetFormatError(f"{path}: not a regular file: {_REDOWNLOAD}") from None
    if len(data) > limit:
        raise DatasetFormatError(f"{path}: over the {limit} bytes allowed for {what}: {_REDOWNLOAD}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetFormatError(f"{path}: not a text file: {_REDOWNLOAD}") from None


def _collapse(text: str) -> str:
    """Whole-text normalisation (no per-line Python): `\n` line ends, one space between values,
    no spaces at line edges, trailing blank lines dropped. Line numbers are preserved."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _LINE_EDGE.sub("\n", _SEPARATORS.sub(" ", text)).rstrip(" \n")
    return text[1:] if text.startswith(" ") else text


def _short(line: str) -> str:
    return repr(line if len(line) <= 60 else line[:57] + "...")


def _numbers(text: str, count: int) -> np.ndarray | None:
    """`count` float64 values of space/newline separated text, or None if some token is not a number
    for numpy's reader nor for float() (the caller's scan then names its line)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)  # older numpy only warns on unread text
            values = np.fromstring(text, dtype=np.float64, sep=" ")
        if values.size == count:
            return values
    except (ValueError, DeprecationWarning):
        pass
    try:  # what np.fromstring leaves (e.g. "1_000", non-ASCII digits): float() per token, as before
        values = np.array(text.split(), dtype=np.float64)
    except ValueError:
        return None
    return values if values.size == count else None


def parse_groundtruth(path: Path, frames: int, images: str = "img/") -> np.ndarray:
    """(N, 4) float64 boxes in one numpy conversion; a per-line rescan runs only to name a bad line.
    `frames`: the frame images the sequence has (in `images`, named in the refusal); the file may
    have at most `frames + LINE_MARGIN` lines."""
    lines_allowed = frames + LINE_MARGIN
    what = f"{frames} frame images in {images} (one line per frame)"
    raw_text = read_bounded(path, lines_allowed * MAX_LINE_BYTES + SLACK_BYTES, what)
    text = _collapse(raw_text)
    if not text:
        raise DatasetFormatError(f"{path}: no ground-truth lines (empty sequence): restore or remove it")
    lines = text.count("\n") + 1
    if lines > lines_allowed:
        raise DatasetFormatError(
            f"{path}: {lines} lines but {images} holds {frames} frame images: a ground-truth file has one "
            f"x,y,w,h line per frame; {_REDOWNLOAD}"
        )
    if _FOUR_COLUMNS.fullmatch(text + "\n"):
        values = _numbers(text, 4 * lines)
        if values is not None and np.isfinite(values).all():
            return values.reshape(-1, 4)
    raw_lines = raw_text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for number, line in enumerate(text.split("\n"), start=1):
        values = line.split(" ") if line else []
        raw = _short(raw_lines[number - 1])
        if len(values) != 4:
            raise DatasetFormatError(
                f"{path}:{number}: expected 4 comma-separated values x,y,w,h, found {len(values)} "
                f"in {raw}: fix the line or re-download the sequence"
            )
        try:
            finite = bool(np.isfinite(np.array(values, dtype=np.float64)).all())
        except ValueError:
            finite = False
        if not finite:
            raise DatasetFormatError(
                f"{path}:{number}: non-numeric value in {raw}: fix the line or re-download the sequence"
            )
    raise AssertionError(f"{path}: fast parse failed but every line parses")  # unreachable


def _labels(path: Path, expected: int, groundtruth: Path, levels: tuple[str, ...], noun: str) -> np.ndarray:
    """`expected` tokens of a comma- or newline-separated label file, each one of `levels`."""
    what = f"{expected} {noun}s ({groundtruth.name} has {expected} lines)"
    text = _collapse(read_bounded(path, expected * MAX_FLAG_BYTES + SLACK_BYTES, what))
    labels = np.array(text.split(), dtype=str)
    ok = np.isin(labels, levels)
    if not ok.all():
        index = int(np.argmin(ok))
        per_line = np.cumsum([len(line.split()) for line in text.split("\n")])
        line = int(np.searchsorted(per_line, index, side="right")) + 1
        allowed = " or ".join(levels) if len(levels) <= 2 else f"{levels[0]}..{levels[-1]}"
        raise DatasetFormatError(
            f"{path}:{line}: {noun} {index + 1} is {str(labels[index])[:20]!r}, expected {allowed}: "
            "fix the file or re-download the sequence"
        )
    if labels.size != expected:
        raise DatasetFormatError(
            f"{path}: {labels.size} {noun}s but {groundtruth.name} has {expected} lines: "
            "the files need one entry per frame; re-download the sequence"
        )
    return labels


def parse_flags(path: Path, expected: int, groundtruth: Path) -> np.ndarray:
    """(N,) bool flags from LaSOT's one-line comma-separated 0/1 file (several lines also accepted)."""
    return _labels(path, expected, groundtruth, ("0", "1"), "flag") == "1"


def parse_levels(path: Path, expected: int, groundtruth: Path, levels: int) -> np.ndarray:
    """(N,) int8 labels in 0..levels, one per box, a label a line or comma separated (GOT-10k's
    `absence.label` 0..1, `cover.label` 0..8)."""
    allowed = tuple(str(v) for v in range(levels + 1))
    return _labels(path, expected, groundtruth, allowed, "label").astype(np.int8)


def read_name_list(path: Path, limit: int, pattern: re.Pattern[str], what: str) -> list[str]:
    """A list file of names (GOT-10k's `list.txt`), one a line, each matching `pattern`; at most
    `limit` lines of `MAX_LINE_BYTES`, checked from the file's size before it is read."""
    text = read_bounded(path, limit * MAX_LINE_BYTES + SLACK_BYTES, f"{limit} {what}")
    names = [line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while names and not names[-1]:
        names.pop()
    if len(names) > limit:
        raise DatasetFormatError(f"{path}: {len(names)} lines, over the {limit} {what}: {_REDOWNLOAD}")
    for number, name in enumerate(names, start=1):
        if not pattern.fullmatch(name):
            raise DatasetFormatError(
                f"{path}:{number}: {_short(name)} is not one of the {what}: fix the line or re-download"
            )
    return names


__all__ = [
    "LINE_MARGIN",
    "MAX_FLAG_BYTES",
    "MAX_LINE_BYTES",
    "parse_flags",
    "parse_groundtruth",
    "parse_levels",
    "read_bounded",
    "read_name_list",
]
