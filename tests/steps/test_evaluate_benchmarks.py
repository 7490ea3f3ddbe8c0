"""evaluate -P benchmark=...: GOT-10k val scored as the toolkit scores its result files, the servers'
archives for GOT-10k test and TrackingNet test, and the LaSOT extension, on synthetic trees."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from got10k_toolkit import toolkit_report
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.config import ConfigError, TrackerConfig
from seqtrack_mlflow.datasets.synthetic import generate_lasot
from seqtrack_mlflow.datasets.synthetic_layouts import generate_got10k, generate_trackingnet
from seqtrack_mlflow.steps.evaluate import run_evaluate

FRAMES = 12


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("benchmarks")
    generate_got10k(root / "got10k", train=0, val=2, test=2, frames=FRAMES, size=(96, 72), seed=4)
    generate_trackingnet(root / "tn", chunks=(), videos=0, test=2, frames=FRAMES, size=(96, 72), seed=4)
    generate_lasot(root / "lasot", ["airplane"], sequences_per_class=2, frames=FRAMES, size=(96, 72), seed=4)
    shutil.move(root / "lasot" / "airplane", root / "ext" / "atv")  # LaSOT's layout under an extension class
    for k, seq in enumerate(sorted((root / "ext" / "atv").iterdir()), start=1):
        seq.rename(seq.with_name(f"atv-{k}"))
    return {"got10k_root": root / "got10k", "trackingnet_root": root / "tn", "lasot_ext_root": root / "ext"}


def _evaluate(ckpt: Path, tmp_path: Path, benchmark: str, roots: dict[str, Path], **tracker):
    data = {k: str(v) for k, v in roots.items()}
    cfg = TrackerConfig(benchmark=benchmark, **tracker)
    return run_evaluate(str(ckpt), cfg, data_override=data, device="cpu", output_dir=tmp_path / "out")


def _labels(path: Path) -> np.ndarray:
    return np.loadtxt(path, dtype=int)


def test_got10k_val_matches_the_toolkit_on_its_result_files(
    tiny_checkpoint_file, tmp_path, roots, mlflow_uri
):
    result = _evaluate(tiny_checkpoint_file, tmp_path, "got10k_val", roots)
    # The toolkit's reading: results/<seq>/<seq>_001.txt against groundtruth.txt, cover.label, resolution.
    sequences = []
    for seq_dir in sorted((roots["got10k_root"] / "val").glob("GOT-10k_Val_*")):
        pred = np.loadtxt(
            result.out_dir / "results" / seq_dir.name / f"{seq_dir.name}_001.txt", delimiter=","
        )
        gt = np.loadtxt(seq_dir / "groundtruth.txt", delimiter=",")
        meta = dict(line.split(": ", 1) for line in (seq_dir / "meta_info.ini").read_text().splitlines()[1:])
        width, height = (int(v) for v in meta["resolution"].strip("()").split(","))
        assert pred.shape == gt.shape == (FRAMES, 4)
        sequences.append((pred, gt, _labels(seq_dir / "cover.label"), (width, height)))
    want = toolkit_report(sequences)
    for key in ("ao", "sr50", "sr75"):
        # logged in percent, from the toolkit's 3-decimal result files: equal up to that rounding
        assert result.metrics[key] == pytest.approx(100 * want[key], abs=0.05), key
    run = MlflowClient().get_run(result.run_id)
    assert {"ao", "sr50", "sr75", "fps"} <= set(run.data.metrics)
    assert run.data.params["benchmark"] == "got10k_val" and run.data.params["update_interval"] == "1"
    assert {r["sequence"] for r in result.per_sequence} == {"GOT-10k_Val_000001", "GOT-10k_Val_000002"}
    names = {a.path for a in MlflowClient().list_artifacts(result.run_id)}
    assert {"per_sequence.csv", "success_plot.png", "results"} <= names


def test_got10k_test_writes_the_servers_archive(tiny_checkpoint_file, tmp_path, roots, mlflow_uri, capsys):
    result = _evaluate(tiny_checkpoint_file, tmp_path, "got10k_test", roots)
    with zipfile.ZipFile(result.out_dir / "got10k_test_submission.zip") as archive:
        names = sorted(archive.namelist())
        lines = archive.read("GOT-10k_Test_000001/GOT-10k_Test_000001_001.txt").decode().splitlines()
    assert "GOT-10k_Test_000002/GOT-10k_Test_000002_time.txt" in names
    assert len(lines) == FRAMES and all(len(line.split(",")) == 4 for line in lines)
    assert all(v.lstrip("-").isdigit() for line in lines for v in line.split(","))  # integers
    assert "got-10k.aitestunion.com" in capsys.readouterr().out
    assert MlflowClient().get_run(result.run_id).data.params["update_interval"] == "1"


def test_trackingnet_test_writes_a_flat_archive(tiny_checkpoint_file, tmp_path, roots, mlflow_uri):
    result = _evaluate(tiny_checkpoint_file, tmp_path, "trackingnet_test", roots)
    videos = sorted(p.name for p in (roots["trackingnet_root"] / "TEST" / "frames").iterdir())
    with zipfile.ZipFile(result.out_dir / "trackingnet_test_submission.zip") as archive:
        assert sorted(archive.namelist()) == sorted(f"{v}.txt" for v in videos)  # flat, one file a video
        first = archive.read(f"{videos[0]}.txt").decode().splitlines()
    anno = (roots["trackingnet_root"] / "TEST" / "anno" / f"{videos[0]}.txt").read_text().split(",")
    assert len(first) == FRAMES and first[0] == ",".join(str(int(float(v))) for v in anno)  # frame 1 given
    assert MlflowClient().get_run(result.run_id).data.params["update_interval"] == "25"
    with pytest.raises(ConfigError, match="sends every frame to its server: drop -P max_frames=3"):
        _evaluate(tiny_checkpoint_file, tmp_path, "trackingnet_test", roots, max_frames=3)


def test_lasot_ext_is_scored_with_lasots_protocol(tiny_checkpoint_file, tmp_path, roots, mlflow_uri):
    result = _evaluate(tiny_checkpoint_file, tmp_path, "lasot_ext", roots, baselines="kcf", max_frames=5)
    assert {r["sequence"] for r in result.per_sequence} == {"atv-1", "atv-2"}
    assert {"auc", "precision", "norm_precision"} <= set(result.metrics)
    run = MlflowClient().get_run(result.run_id)
    assert run.data.params["update_interval"] == "9999"
    # A classical baseline, asked for, is scored with the same protocol (off unless asked, as for LaSOT).
    assert run.data.params["baselines"] == "kcf" and 0.0 <= run.data.metrics["baseline.kcf.auc"] <= 100.0


def test_baselines_are_refused_where_lasots_protocol_is_not_the_scoring(
    tiny_checkpoint_file, tmp_path, roots
):
    with pytest.raises(ConfigError, match="not benchmark=got10k_val: drop -P baselines"):
        _evaluate(tiny_checkpoint_file, tmp_path, "got10k_val", roots, baselines="mil")
    assert not (tmp_path / "out").exists()
