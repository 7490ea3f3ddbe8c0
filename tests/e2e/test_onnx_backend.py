"""`evaluate` and `track` with `--backend onnx` end to end, in processes of their own: the checkpoint
exported into the cache, run by onnxruntime, with PyTorch's boxes and scores (the fast tests are
tests/model/test_onnx_export.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.model.onnx_export import ENCODER_INT8_FILE


def _evaluate(checkpoint: Path, out: Path, *options: str) -> subprocess.CompletedProcess:
    args = [
        "evaluate",
        "--checkpoint",
        str(checkpoint),
        "--device",
        "cpu",
        "--output_dir",
        str(out),
        *options,
    ]
    return subprocess.run(
        [sys.executable, "-m", "seqtrack_mlflow.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ.copy(),
    )


def test_evaluate_with_onnxruntime_scores_as_pytorch(
    tiny_checkpoint_file: Path, tmp_path: Path, mlflow_uri: str
):
    runs = {}
    for backend in ("torch", "onnx"):
        done = _evaluate(tiny_checkpoint_file, tmp_path / backend, "--backend", backend)
        assert done.returncode == 0, done.stderr[-2000:]
        runs[backend] = MlflowClient().search_runs(
            experiment_ids=["0"], filter_string=f"params.backend = '{backend}'"
        )[0]
    cache = Path(os.environ["SEQTRACK_CACHE"]) / "onnx"
    assert len(list(cache.glob("*/encoder.onnx"))) == 1  # exported once, into the cache
    results = {b: sorted((tmp_path / b / r.info.run_id / "results").glob("*.txt")) for b, r in runs.items()}
    assert [p.name for p in results["onnx"]] == [p.name for p in results["torch"]] and results["torch"]
    for ours, theirs in zip(results["onnx"], results["torch"], strict=True):
        np.testing.assert_allclose(
            np.loadtxt(ours, delimiter=","), np.loadtxt(theirs, delimiter=","), atol=0.01
        )
    metrics = {b: r.data.metrics for b, r in runs.items()}
    for key in ("auc", "precision", "norm_precision"):
        assert abs(metrics["onnx"][key] - metrics["torch"][key]) < 1e-6, key
    # A second run reuses the export (no new folder) and int8 quantises its encoder beside it.
    again = _evaluate(
        tiny_checkpoint_file, tmp_path / "int8", "--backend", "onnx", "--eval_precision", "int8"
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(list(cache.glob(f"*/{ENCODER_INT8_FILE}"))) == 1 and len(list(cache.iterdir())) == 1


def test_track_with_onnxruntime_follows_the_torch_boxes(
    tiny_ckpt: Path, clip: Path, sequence, tmp_path: Path, mlflow_uri: str
):
    """`track --backend onnx` on a user's clip: the boxes PyTorch's tracker finds (within 0.01 px)."""
    boxes = {}
    for backend in ("torch", "onnx"):
        args = ["track", "--video", str(clip), "--box", sequence[1], "--checkpoint", str(tiny_ckpt)]
        args += ["--device", "cpu", "--output_dir", str(tmp_path / backend), "--backend", backend]
        done = subprocess.run(
            [sys.executable, "-m", "seqtrack_mlflow.cli", *args], capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-2000:]
        (found,) = (tmp_path / backend).glob("*/boxes.txt")
        boxes[backend] = np.loadtxt(found, delimiter=",")
    assert len(boxes["onnx"]) == len(sequence[0])
    np.testing.assert_allclose(boxes["onnx"], boxes["torch"], atol=0.01)
