"""The sanitizer job: the region decoder (inputs/_jpegcrop.c) built with AddressSanitizer and UBSan in a
temporary folder, then a seeded, bounded differential fuzz against PIL and a mutation fuzz of real JPEGs
through that build (tests/jpegcrop_fuzz.py) in a subprocess: it must exit 0 with no sanitizer report.

Slow tier (CI runs it: `pytest -m ''`); about a minute and a half on two busy cores. On CI (`CI=true`) it
fails rather than skips when the build cannot be made (gcc and libjpeg-dev are installed there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from factories import ROOT
from hostile_jpeg import build_writer, sanitizer_build
from services import skip_or_fail_on_ci

FUZZ = Path(__file__).resolve().parents[1] / "jpegcrop_fuzz.py"  # tests/, beside the other support modules
REPORTS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer", "SUMMARY: UndefinedBehavior")


def test_region_decoder_under_sanitizers(tmp_path: Path):
    module, sanitizer_env, why = sanitizer_build(tmp_path)
    if module is None:
        skip_or_fail_on_ci(f"cannot build _jpegcrop with -fsanitize=address,undefined: {why}")
    writer, why = build_writer(tmp_path)
    if writer is None:
        skip_or_fail_on_ci(f"cannot build the libjpeg writer of the samplings PIL cannot write: {why}")
    env = {
        **os.environ,
        **sanitizer_env,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        # The package's own (unsanitized) build is never called: the fuzz calls the sanitized one.
        "SEQTRACK_JPEG_DECODER": "pil",
    }
    args = [sys.executable, str(FUZZ), "--module", str(module), "--writer", str(writer), "--seed", "20"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=540, cwd=tmp_path)
    reports = [line for line in done.stderr.splitlines() if any(r in line for r in REPORTS)]
    assert not reports, "\n".join(reports[:5]) + "\n" + done.stderr[-6000:]
    assert done.returncode == 0, done.stderr[-6000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    # It really ran: thousands of crops compared with PIL's, every hostile call refused, files mutated.
    assert summary["crops_compared"] >= 10_000 and summary["hostile_calls"] >= 20_000, summary
    assert summary["mutated"] == 120_000 and summary["cut"] > 1000 and summary["refused"] > 1000, summary
