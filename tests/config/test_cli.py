"""User mistakes end in one line naming the input and the fix, exit status 2, and no work done."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from seqtrack_mlflow.cli import main
from seqtrack_mlflow.datasets.lasot import read_sequence


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--patch_size", "7"], "patch_size 7 does not divide template_size 64"),
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
        (
            ["evaluate", "--checkpoint", "models:/seqtrack/1"],
            "models:/seqtrack/1: no registered model 'seqtrack' in the tracking store sqlite:",
        ),
        (
            ["train", "--pretrained", "models:/seqtrack@best", "--source", "synthetic"],
            "(registered: none): give a registered name",
        ),
        (
            ["main", "--model_name", "my/tracker"],
            "model_name=my/tracker is invalid: use a name without / @ :",
        ),
        (["select-data", "--classes", "airplane,dragon", "--source", "synthetic"], "dragon"),
        (
            ["select-data", "--source", "floppy"],
            "unknown source 'floppy': use one of auto, local, hub, synthetic",
        ),
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
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")  # no usage text


@pytest.mark.parametrize("command", ["train", "evaluate", "select-data", "main", "synth-lasot"])
def test_unknown_option_is_one_line_naming_it_and_the_fix(command: str) -> None:
    """What `mlflow run -P foo=1` passes: `--foo 1`; click would print its usage text."""
    result = invoke(command, "--foo", "1")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr  # one line
    line = result.stderr.strip()
    assert line.startswith("error: unknown option --foo") and "-P foo=" in line and "--help" in line
    assert "Usage:" not in result.output


def test_unknown_option_lists_close_matches_in_mlproject_spelling() -> None:
    result = invoke("train", "--epoch", "3")
    assert result.exit_code == 2 and "did you mean --epochs" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1


def test_other_usage_errors_are_one_line_and_help_still_works() -> None:
    for args, message in (
        (["train", "--epochs", "many"], "'many' is not a valid integer"),
        (["no-such-step"], "No such command 'no-such-step'"),
    ):
        result = invoke(*args)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    for args in (["--help"], ["train", "--help"], ["evaluate", "-h"]):
        result = invoke(*args)
        assert result.exit_code == 0 and "Usage:" in result.stdout and "--help" in result.stdout


def test_command_summaries_are_whole_sentences() -> None:
    """`seqtrack-mlflow --help` lists every command with a summary click does not cut mid-word."""
    out = invoke("--help").stdout
    listed = out.split("Commands:", 1)[1].strip().splitlines()
    assert len(listed) == len(main.commands)
    for line in listed:
        name, summary = line.split(maxsplit=1)
        assert name in main.commands and not summary.endswith("..."), line


def test_tracker_settings_refused_on_evaluate_in_one_line(
    tiny_checkpoint_file: Path, tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("evaluate", "--checkpoint", str(tiny_checkpoint_file), "--update_interval", "0")
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "update_interval" in errors[0], result.stderr
    assert not (tmp_path / "outputs").exists()


def test_too_few_frames_for_sampling_is_one_line(
    tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(
        "train",
        *("--source", "synthetic", "--synthetic_frames", "10", "--synthetic_sequences", "2"),
        *("--epochs", "1", "--samples_per_epoch", "4", "--batch_size", "4", "--device", "cpu"),
        *("--system_metrics", "false", "--search_size", "64", "--template_size", "64"),
    )
    assert result.exit_code == 2, (result.output, result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "frames" in errors[0], result.stderr


@pytest.mark.parametrize(
    "error",
    [
        "seqtrack_mlflow.evaluation.tracker:TrackerError",
        "seqtrack_mlflow.inputs.sampling:SamplingError",
        "seqtrack_mlflow.evaluation.metrics:MetricsError",
        "seqtrack_mlflow.train.checkpoints:CheckpointWriteError",
    ],
)
def test_every_user_error_class_is_one_line(error: str) -> None:
    import importlib

    import click

    from seqtrack_mlflow.cli import user_facing

    module, name = error.split(":")
    cls = getattr(importlib.import_module(module), name)

    @click.command()
    @user_facing
    def fails() -> None:
        raise cls("the input X is wrong: do Y")

    result = CliRunner().invoke(fails, [])
    assert result.exit_code == 2 and result.stderr == "error: the input X is wrong: do Y\n"


def test_a_worker_wrapped_error_keeps_only_its_message() -> None:
    """A DataLoader worker re-raises the error with the worker's traceback inside the message."""
    import click

    from seqtrack_mlflow.cli import user_facing
    from seqtrack_mlflow.inputs.sampling import SamplingError

    wrapped = (
        "Caught SamplingError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n'
        "seqtrack_mlflow.inputs.sampling.SamplingError: too few frames: add more\n"
    )

    @click.command()
    @user_facing
    def fails() -> None:
        raise SamplingError(wrapped)

    result = CliRunner().invoke(fails, [])
    assert result.exit_code == 2 and result.stderr == "error: too few frames: add more\n"


def test_a_full_disk_anywhere_is_one_line() -> None:
    import click

    from seqtrack_mlflow.cli import user_facing

    @click.command()
    @user_facing
    def fills() -> None:
        with open("/dev/full", "wb", buffering=0) as f:  # a real ENOSPC from the kernel
            f.write(b"x")

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    result = CliRunner().invoke(fills, [])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: no space left") and "free space" in result.stderr


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


@pytest.mark.slow  # two real CLI processes (~20 s): slow tier
def test_a_run_id_with_no_store_here_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    """MLflow's default store is ./mlflow.db: from another folder, say where runs are looked up."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    for args in (["evaluate", "--checkpoint", "a" * 32], ["train", "--data", "b" * 32]):
        proc = subprocess.run(
            [sys.executable, "-m", "seqtrack_mlflow.cli", *args],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
        assert "no MLflow store in this folder" in line and "MLFLOW_TRACKING_URI" in line, line
        assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # no empty mlflow.db, no outputs
