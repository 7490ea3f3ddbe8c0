"""`mlflow run . -e track` as a user types it, on a real H.264 clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from factories import CLIP_FRAMES as FRAMES
from factories import decoded, reference_boxes
from mlflow.tracking import MlflowClient


def test_mlflow_run_track_end_to_end(tiny_ckpt: Path, clip: Path, sequence, tmp_path: Path, mlflow_uri: str):
    """`mlflow run . -e track` as a user types it: one FINISHED run holding the four outputs, the boxes
    those of the tracker on the decoded clip."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    params = {"video": clip, "box": sequence[1], "checkpoint": tiny_ckpt, "output_dir": tmp_path}
    cmd = [sys.executable, "-m", "mlflow", "run", str(root), "--env-manager", "local", "-e", "track"]
    cmd += [arg for k, v in params.items() for arg in ("-P", f"{k}={v}")]
    proc = subprocess.run(cmd, env=dict(os.environ), capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"tracked {FRAMES} frames of clip.mp4 (162x122, 25 fps)" in proc.stdout, proc.stdout
    (run,) = MlflowClient().search_runs(experiment_ids=["0"])
    assert run.info.status == "FINISHED" and run.data.params["video_name"] == "clip.mp4"
    names = {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
    assert names == {"boxes.txt", "boxes.csv", "tracked.mp4", "preview.gif"}
    boxes = np.loadtxt(tmp_path / run.info.run_id / "boxes.txt", delimiter=",")
    assert np.allclose(boxes, reference_boxes(tiny_ckpt, decoded(clip), sequence[1]), atol=0.0051, rtol=0)
