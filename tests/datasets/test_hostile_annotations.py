"""Hostile annotation files (issue 20, case 9): a ground truth or flag file far longer than the sequence.

A 10^7-line `groundtruth.txt` once took 29 s and 3.4 GB before its refusal; now the frame images present
bound what the files may hold, checked from the size and the line count before any number is parsed.
The numpy parse must give the former reader's values to the bit and refuse the same lines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from seqtrack_mlflow.datasets.annotations import LINE_MARGIN, _collapse, parse_groundtruth
from seqtrack_mlflow.datasets.lasot import LasotFormatError, read_sequence


def write_sequence(root: Path, frames: int, lines: int, row: bytes = b"367,100,41,16\n") -> Path:
    """`airplane-1` with `frames` (empty) images, `lines` copies of `row`, and flags for `lines` boxes."""
    seq = root / "airplane" / "airplane-1"
    (seq / "img").mkdir(parents=True)
    for index in range(frames):
        (seq / "img" / f"{index + 1:08d}.jpg").write_bytes(b"")
    with open(seq / "groundtruth.txt", "wb") as file:
        block = row * min(lines, 100_000)
        for start in range(0, lines, 100_000):
            file.write(block if lines - start >= 100_000 else row * (lines - start))
    for name in ("full_occlusion.txt", "out_of_view.txt"):
        (seq / name).write_text(",".join(["0"] * min(lines, frames + LINE_MARGIN)))
    return seq


_MEASURE = """
# VmHWM, this process's own peak: ru_maxrss would carry the pytest parent's peak across fork + exec.
def peak_kib():
    return int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
import json, sys, time
from seqtrack_mlflow.datasets.lasot import LasotFormatError, read_sequence
before = peak_kib()
start = time.perf_counter()
try:
    read_sequence(sys.argv[1])
    outcome = "read"
except LasotFormatError as exc:
    outcome = str(exc)
print(json.dumps({"outcome": outcome, "seconds": time.perf_counter() - start,
                  "rss_growth_kib": peak_kib() - before}))
"""


def _read_in_subprocess(seq: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(seq)], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def test_a_million_line_groundtruth_is_refused_fast_and_small(tmp_path):
    seq = write_sequence(tmp_path, frames=30, lines=1_200_000)
    gt = seq / "groundtruth.txt"
    assert gt.stat().st_size > 16_000_000
    result = _read_in_subprocess(seq)
    message = result["outcome"]
    assert "\n" not in message and str(gt) in message and "30 frame images" in message, message
    assert "re-download" in message
    assert result["seconds"] < 5  # was ~3 s per 10^6 lines, and 3.4 GB at 10^7
    assert result["rss_growth_kib"] < 32 << 10  # refused from the size: nothing read


def test_many_short_lines_within_the_size_bound_are_refused_before_parsing(tmp_path):
    seq = write_sequence(tmp_path, frames=100, lines=5000, row=b"1,2,3,4\n")  # 40 KB: under 164 x 256 B
    message = str(pytest.raises(LasotFormatError, read_sequence, seq).value)
    assert "\n" not in message
    assert f"{seq / 'groundtruth.txt'}: 5000 lines but {seq / 'img'} holds 100 frame images" in message


@pytest.mark.parametrize("check_images", [True, False])
def test_the_margin_keeps_short_image_folders_readable(tmp_path, check_images):
    """Up to LINE_MARGIN lines beyond the images still reach the per-frame check (or, on an index
    re-read, are read as before); one more line is refused by the count."""
    seq = write_sequence(tmp_path / "a", frames=30, lines=30 + LINE_MARGIN)
    if check_images:
        message = str(pytest.raises(LasotFormatError, read_sequence, seq).value)
        assert "00000031.jpg: missing frame image for groundtruth.txt line 31" in message
    else:
        assert read_sequence(seq, check_images=False).num_frames == 30 + LINE_MARGIN
    over = write_sequence(tmp_path / "b", frames=30, lines=31 + LINE_MARGIN)
    message = str(pytest.raises(LasotFormatError, read_sequence, over, check_images).value)
    assert f"{31 + LINE_MARGIN} lines but" in message


def test_a_huge_flag_file_is_refused_from_its_size(tmp_path):
    seq = write_sequence(tmp_path, frames=30, lines=30)
    flags = seq / "out_of_view.txt"
    flags.write_bytes(b"0," * 2_000_000)
    result = _read_in_subprocess(seq)
    assert str(flags) in result["outcome"] and "30 flags" in result["outcome"], result
    assert result["seconds"] < 5 and result["rss_growth_kib"] < 32 << 10


def test_a_fifo_in_place_of_the_groundtruth_does_not_hang(tmp_path):
    seq = write_sequence(tmp_path, frames=3, lines=3)
    gt = seq / "groundtruth.txt"
    gt.unlink()
    os.mkfifo(gt)
    message = str(pytest.raises(LasotFormatError, read_sequence, seq).value)
    assert f"{gt}: not a regular file" in message


def test_missing_image_folder_is_named_on_an_index_reread_too(tmp_path):
    seq = write_sequence(tmp_path, frames=3, lines=3)
    for image in (seq / "img").iterdir():
        image.unlink()
    (seq / "img").rmdir()
    for check_images in (True, False):
        message = str(pytest.raises(LasotFormatError, read_sequence, seq, check_images).value)
        assert f"{seq / 'img'}: image folder is missing" in message


# -- the numpy parse reads what the former reader read --------------------------------------------

TOKENS = [
    "367", "100.5", "-0", "+.5", "1.", "1e3", "1E-3", "4.9e-324", "1e-400", "0.30000000000000004",
    "123456789012345678901234567890", "1.7976931348623157e308", "00012", "1_000", "\u0661\u0662",
]  # fmt: skip


def _reference(raw: str) -> np.ndarray:
    """The former reader's fast path: every token through float() (numpy's str -> float64 cast)."""
    return np.array(_collapse(raw.removeprefix("\ufeff")).split(), dtype=np.float64).reshape(-1, 4)


def _random_file(rng: np.random.Generator, lines: int) -> str:
    out = []
    for _ in range(lines):
        values = [
            str(rng.choice(TOKENS)) if rng.random() < 0.3 else repr(float(rng.uniform(-50, 1300)))
            for _ in range(4)
        ]
        seps = [str(rng.choice([",", ", ", "\t", " ", "  ", " ,"])) for _ in range(3)]
        out.append(values[0] + seps[0] + values[1] + seps[1] + values[2] + seps[2] + values[3])
    ending = str(rng.choice(["\n", "\r\n", "\r"]))
    tail = str(rng.choice(["", ending, ending * 3]))
    return ("\ufeff" if rng.random() < 0.3 else "") + ending.join(out) + tail


def test_values_are_bit_identical_to_the_former_reader(tmp_path):
    rng = np.random.default_rng(20)
    gt = tmp_path / "groundtruth.txt"
    for trial in range(200):
        raw = _random_file(rng, int(rng.integers(1, 60)))
        gt.write_bytes(raw.encode())
        got = parse_groundtruth(gt, frames=60)
        want = _reference(raw)
        assert got.shape == want.shape and got.tobytes() == want.tobytes(), (trial, raw[:200])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1,2,3", "found 3"),
        ("1,2,3,4,5", "found 5"),
        ("1,2,abc,4", "non-numeric value"),
        ("1,2,nan,4", "non-numeric value"),
        ("1,2,1e400,4", "non-numeric value"),
        ("1,2,nan(1),4", "non-numeric value"),
        ("1,2,1-2,4", "non-numeric value"),
        ("1,2,0x10,4", "non-numeric value"),
        ("1,2,3\u00a04,5", "non-numeric value"),
        ("", "found 0"),
    ],
)
def test_a_bad_line_is_named_as_before(tmp_path, line, message):
    gt = tmp_path / "groundtruth.txt"
    gt.write_text("1,2,3,4\n5,6,7,8\n" + line + "\n9,10,11,12\n")
    with pytest.raises(LasotFormatError) as info:
        parse_groundtruth(gt, frames=4)
    text = str(info.value)
    assert "\n" not in text and f"{gt}:3: " in text and message in text, text
