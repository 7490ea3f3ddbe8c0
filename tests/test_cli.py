"""User mistakes end in one line naming the input and the fix, exit status 2, and no work done."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from seqtrack_mlflow.cli import main
from seqtrack_mlflow.data.lasot import read_sequence


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--patch_size", "7"], "patch_size 7 does not divide template_size 128"),
        (["train", "--epochs", "-1"], "epochs=-1 is invalid"),
        (["train", "--lasot_root", "/nonexistent/LaSOT", "--source", "local", "--epochs", "1"], "lasot_root"),
        (
            ["train", "--resume", "missing.ckpt", "--source", "synthetic"],
            "checkpoint 'missing.ckpt' not found",
        ),
        (
            [
                "train",
                "--amp",
                "true",
                "--device",
                "cpu",
                "--source",
                "synthetic",
                "--samples_per_epoch",
                "16",
                "--epochs",
                "1",
                "--system_metrics",
                "false",
            ],
            "amp=true needs a CUDA device",
        ),
        (["evaluate", "--checkpoint", "0" * 32], "no run 00000000000000000000000000000000"),
        (["select-data", "--classes", "airplane,dragon", "--source", "synthetic"], "dragon"),
        (["synth-lasot", "x", "--size", "wide"], "wide"),
    ],
)
def test_bad_inputs_are_one_line(
    args: list[str], message: str, tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "outputs").exists()  # refused before any work


def test_unknown_preset_is_refused_by_the_option() -> None:
    result = invoke("train", "--preset", "b128")
    assert result.exit_code == 2 and "'b128' is not one of" in result.stderr


def test_synth_lasot_writes_a_readable_tree(tmp_path: Path) -> None:
    result = invoke(
        "synth-lasot",
        str(tmp_path),
        "--classes",
        "airplane",
        "--sequences",
        "2",
        "--frames",
        "20",
        "--size",
        "160x120",
    )
    assert result.exit_code == 0, result.output
    seqs = sorted((tmp_path / "airplane").iterdir())
    assert [s.name for s in seqs] == ["airplane-1", "airplane-2"]
    seq = read_sequence(seqs[0])
    assert seq.num_frames == 20 and seq.split == "test" and read_sequence(seqs[1]).split == "train"
