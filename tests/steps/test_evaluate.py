"""The evaluate step in process, on a small checkpoint: metrics, result files, params and lineage."""

from __future__ import annotations

import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.config import ConfigError, TrackerConfig, step_settings
from seqtrack_mlflow.steps.evaluate import run_evaluate


def test_evaluate_a_checkpoint_file(tiny_checkpoint_file: Path, tmp_path: Path, mlflow_uri: str) -> None:
    result = run_evaluate(
        str(tiny_checkpoint_file), TrackerConfig(max_frames=6), device="cpu", output_dir=tmp_path / "out"
    )
    assert {"auc", "precision", "norm_precision", "fps", "first_box_auc", "auc_airplane", "auc_bird"} <= set(
        result.metrics
    )
    assert all(0.0 <= result.metrics[k] <= 100.0 for k in ("auc", "precision", "norm_precision"))
    # The test split of 2 synthetic sequences per class (protocol II: sequence 1 of airplane is a
    # test sequence, sequence 2 of bird), each tracked for max_frames frames.
    assert len(result.per_sequence) == 2 and {r["frames"] for r in result.per_sequence} == {6}
    files = sorted((result.out_dir / "results").glob("*.txt"))
    assert len(files) == 2 and all(np.loadtxt(f, delimiter=",").shape == (6, 4) for f in files)

    run = MlflowClient().get_run(result.run_id)
    params = run.data.params
    for s in step_settings("evaluate"):  # every setting of the step, with the value used
        assert s.name in params, s.name
    assert params["checkpoint"] == str(tiny_checkpoint_file) and params["max_frames"] == "6"
    assert params["checkpoint_uri"] == str(tiny_checkpoint_file.resolve())  # the one resolved form
    assert params["classes"] == "airplane,bird" and params["update_interval"] == "450"
    assert params["seed"] == "3" and params["patch_size"] == "16"
    # Synthetic data: the classical baselines by default, on the same frames, logged beside ours.
    assert params["baselines"] == "kcf,csrt,mil"
    for name in ("kcf", "csrt", "mil"):
        for k in ("auc", "precision", "norm_precision"):
            assert 0.0 <= run.data.metrics[f"baseline.{name}.{k}"] <= 100.0, (name, k)
        assert result.metrics[f"baseline.{name}.auc"] == run.data.metrics[f"baseline.{name}.auc"]
        assert all(0.0 <= r[f"{name}_auc"] <= 100.0 for r in result.per_sequence)
    assert run.data.tags["seqtrack.train_run_id"] == "b" * 32
    note = run.data.tags["mlflow.note.content"]  # the description the UI shows
    assert note.startswith("Tracked 2 test sequences of airplane + bird (synthetic LaSOT-format data)"), note
    (dataset,) = mlflow.get_run(result.run_id).inputs.dataset_inputs
    assert {t.key: t.value for t in dataset.tags}["mlflow.data.context"] == "evaluation"
    assert {"per_sequence.csv", "success_plot.png", "precision_plot.png", "norm_precision_plot.png"} <= {
        a.path for a in MlflowClient().list_artifacts(result.run_id)
    }


def test_bad_tracker_settings_are_refused_before_a_run(
    tiny_checkpoint_file: Path, tmp_path: Path, mlflow_uri: str
):
    for cfg, message in (
        (TrackerConfig(update_interval=0), "update_interval=0 is invalid"),
        (TrackerConfig(max_frames=0), "max_frames=0 is invalid"),
    ):
        with pytest.raises(ConfigError, match=message):
            run_evaluate(str(tiny_checkpoint_file), cfg, device="cpu", output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert MlflowClient().search_runs(experiment_ids=["0"]) == []


def test_synthetic_data_is_labelled_synthetic_in_lines_and_titles(
    tiny_checkpoint_file: Path, tmp_path: Path, mlflow_uri: str, capsys: pytest.CaptureFixture
) -> None:
    result = run_evaluate(
        str(tiny_checkpoint_file), TrackerConfig(max_frames=3), device="cpu", output_dir=tmp_path
    )
    out = capsys.readouterr().out
    assert "classes: airplane + bird, synthetic LaSOT-format data" in out
    line, baselines = [x for x in out.splitlines() if "AUC" in x]  # ours, then the classical baselines'
    assert baselines.startswith("AUC: SeqTrack")
    assert line.startswith("synthetic LaSOT-format data, epoch_1.ckpt: AUC") and "LaSOT epoch" not in line
    assert (result.out_dir / "success_plot.png").stat().st_size > 0


def test_classes_line_says_what_the_seed_drew() -> None:
    from seqtrack_mlflow.datasets.selection import classes_line

    assert (
        classes_line("airplane,random", ["airplane", "guitar"], 8, "synthetic")
        == "classes: airplane + guitar (drawn with seed 8), synthetic LaSOT-format data"
    )
    assert classes_line("bear", ["bear"], 8, "local") == "classes: bear, LaSOT (local)"


def test_baselines_none_logs_no_baseline(
    tiny_checkpoint_file: Path, tmp_path: Path, mlflow_uri: str, capsys: pytest.CaptureFixture
) -> None:
    cfg = TrackerConfig(max_frames=3, baselines="none")
    result = run_evaluate(str(tiny_checkpoint_file), cfg, device="cpu", output_dir=tmp_path)
    run = MlflowClient().get_run(result.run_id)
    assert run.data.params["baselines"] == "none" and "first_box_auc" in run.data.metrics
    assert not [k for k in run.data.metrics if k.startswith("baseline.")]
    assert not [k for k in result.per_sequence[0] if k.endswith(("kcf_auc", "csrt_auc", "mil_auc"))]
    assert "OpenCV baselines" not in capsys.readouterr().out


def test_baselines_without_opencv_are_refused_in_one_line_before_a_run(
    tiny_checkpoint_file: Path, tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from seqtrack_mlflow.cli import main

    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` raises ImportError, as when not installed
    out = tmp_path / "out"
    for given in ([], ["--baselines", "kcf"]):  # the demo's default, and asked for
        args = [
            "evaluate",
            "--checkpoint",
            str(tiny_checkpoint_file),
            "--device",
            "cpu",
            "--output_dir",
            str(out),
        ]
        result = CliRunner().invoke(main, [*args, *given])
        assert result.exit_code == 2, result.output
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: baselines="), result.stderr
        assert "pip install -e '.[baselines]'" in result.stderr and "-P baselines=none" in result.stderr
    assert MlflowClient().search_runs(experiment_ids=["0"]) == [] and not out.exists()
    # Without baselines, evaluate needs no OpenCV.
    result = CliRunner().invoke(main, [*args, "--baselines", "none", "--max_frames", "2"])
    assert result.exit_code == 0, result.output
