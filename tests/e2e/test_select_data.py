"""`mlflow run . -e select_data` records params, tags, the summary, the index and a dataset input."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import mlflow
from mlflow.tracking import MlflowClient
from services import mlflow_run

from seqtrack_mlflow.config import step_settings


def test_select_data_run(tmp_path: Path, mlflow_uri: str) -> None:
    proc = mlflow_run(
        "select_data", {"seed": "8", "source": "synthetic", "output_dir": str(tmp_path / "out")}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = MlflowClient().search_runs(experiment_ids=["0"])
    assert run.data.params["seed"] == "8" and run.data.params["selected_classes"] == "airplane,guitar"
    for s in step_settings("select_data"):  # every setting of the entry point, with the value used
        assert s.name in run.data.params, s.name
    assert run.data.tags["data.source"] == "synthetic" and run.data.tags["data.classes"] == "airplane,guitar"
    names = {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
    assert {"dataset_summary.md", "dataset_summary.json", "index"} <= names

    index_dir = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="index", dst_path=str(tmp_path / "dl")
    )
    index = datasets.load_from_disk(index_dir)
    assert set(index["class"]) == {"airplane", "guitar"} and set(index["split"]) == {"train", "test"}
    summary = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path="dataset_summary.json", dst_path=str(tmp_path / "dl")
            )
        ).read_text()
    )
    assert summary["totals"]["all"]["sequences"] == len(index) == 40  # 20 per class (the demo default)
    assert index["split"].count("test") == 8  # 4 per class: protocol II

    inputs = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].dataset.name.startswith("lasot-synthetic-airplane-guitar")


def test_unknown_class_is_one_line_and_nonzero(tmp_path: Path, mlflow_uri: str) -> None:
    proc = mlflow_run(
        "select_data",
        {"classes": "airplane,dragon", "source": "synthetic", "output_dir": str(tmp_path / "out")},
    )
    assert proc.returncode != 0
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and "dragon" in error_lines[0] and "airplane" in error_lines[0]
    assert "Traceback" not in proc.stderr.split("error: ")[0][-200:]
