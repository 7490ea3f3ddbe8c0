"""deploy/slurm/train.sbatch, checked as a file (tests/e2e/test_slurm_requeue.py runs it on a real Slurm):
it parses, the lines a lab edits are in one marked block and nowhere else, and the rest is the recipe
the README describes: requeue, the time-limit warning in time for the partial checkpoint, logs per job,
torchrun from SLURM_*, resume=auto."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from factories import ROOT

SBATCH = ROOT / "deploy" / "slurm" / "train.sbatch"
LAB_START, LAB_END = re.compile(r"^# =+ LAB:"), re.compile(r"^# =+ end of LAB lines")
LAB_OPTIONS = ("--partition", "--account", "--nodes", "--gpus-per-node", "--time")


def directives(lines: list[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for line in lines:
        if line.startswith("#SBATCH "):
            name, _, value = line.split()[1].partition("=")
            found[name] = value or None
    return found


def split_lab(text: str) -> tuple[list[str], list[str]]:
    """(the LAB block's lines, every other line)."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if LAB_START.match(line)]
    ends = [i for i, line in enumerate(lines) if LAB_END.match(line)]
    assert len(starts) == len(ends) == 1 and starts[0] < ends[0], "one marked LAB block"
    return lines[starts[0] + 1 : ends[0]], lines[: starts[0]] + lines[ends[0] + 1 :]


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_the_script_parses() -> None:
    subprocess.run(["bash", "-n", str(SBATCH)], check=True, timeout=30)


def test_what_a_lab_edits_is_marked_and_only_there() -> None:
    lab, rest = split_lab(SBATCH.read_text())
    assert set(LAB_OPTIONS) <= set(directives(lab))
    assert all(line.startswith("#SBATCH ") for line in lab), "the LAB block holds #SBATCH lines only"
    assert not set(LAB_OPTIONS) & set(directives(rest)), "a lab-specific option outside the LAB block"


def test_the_recipe_requeues_warns_in_time_and_continues_the_run() -> None:
    text = SBATCH.read_text()
    _, rest = split_lab(text)
    found = directives(rest)
    assert "--requeue" in found and found["--open-mode"] == "append"
    assert found["--output"] == "logs/%x-%j.out"
    grace = re.fullmatch(r"B:USR1@(\d+)", found["--signal"] or "")
    assert grace and int(grace[1]) >= 120, "the warning must leave time for a partial checkpoint"
    assert "trap on_time_limit USR1" in text and 'scontrol requeue "$SLURM_JOB_ID"' in text
    assert "train --resume auto" in text
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST"' in text and '--node_rank "$SLURM_NODEID"' in text
    assert "${MLFLOW_TRACKING_URI:?" in text  # from the environment, refused when missing


def test_the_readme_says_what_the_script_does() -> None:
    readme = (ROOT / "deploy" / "slurm" / "README.md").read_text()
    grace = re.search(r"--signal=B:USR1@(\d+)", SBATCH.read_text())[1]
    assert f"--signal=B:USR1@{grace}" in readme
    for words in ("sbatch deploy/slurm/train.sbatch", "mkdir -p logs", "seqtrack.run_key", "resume=auto"):
        assert words in readme, words
