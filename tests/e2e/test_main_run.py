"""`main` in process (about a minute: the slow tier): the parent run's own results and the lines the
pipeline ends with."""

import shutil
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.cli import main

SMALL = [
    *("--source", "synthetic", "--synthetic_sequences", "4", "--synthetic_frames", "30"),
    *("--search_size", "32", "--template_size", "32", "--epochs", "1", "--samples_per_epoch", "20"),
    *("--batch_size", "10", "--seed", "8", "--system_metrics", "false", "--log_every", "10"),
    *("--device", "cpu", "--model_name", "none", "--max_frames", "8"),
]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, _migrated_db: Path):
    """One small `main` run, its console output and its runs."""
    folder = tmp_path_factory.mktemp("main")
    shutil.copy(_migrated_db, folder / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("MLFLOW_EXPERIMENT_NAME", "seqtrack")
        mp.setenv("SEQTRACK_CACHE", str(folder / "cache"))
        mlflow.set_tracking_uri(uri)
        result = CliRunner().invoke(main, ["main", *SMALL])
        assert result.exit_code == 0, result.output
        client = MlflowClient()
        experiment = client.get_experiment_by_name("seqtrack")
        runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
        artifacts = [
            f.path for d in ("data", "evaluation") for f in client.list_artifacts(runs["main"].info.run_id, d)
        ]
        yield result, runs, artifacts, folder, experiment.experiment_id


def test_main_ends_with_the_ui_command_run_ids_checkpoints_and_download(pipeline) -> None:
    result, runs, _, folder, experiment_id = pipeline
    out = result.stdout
    assert f"mlflow ui --backend-store-uri sqlite:///{folder / 'mlflow.db'}" in out
    assert f"experiment 'seqtrack' (id {experiment_id})" in out
    for name in ("main", "select_data", "train", "evaluate"):
        assert runs[name].info.run_id in out
    train_id = runs["train"].info.run_id
    assert f"runs:/{train_id}/checkpoints/" in out
    assert f"mlflow artifacts download -u runs:/{train_id}/checkpoints/epoch_1.ckpt -d ." in out
    # the first MLflow line, on stderr, named the experiment and the store before the run started
    assert f"MLflow: experiment 'seqtrack' (id {experiment_id}) in sqlite:///" in result.stderr


def test_main_holds_first_box_auc_the_summary_and_the_plots(pipeline) -> None:
    _, runs, artifacts, _, _ = pipeline
    parent, evaluate = runs["main"].data.metrics, runs["evaluate"].data.metrics
    assert parent["first_box_auc"] == pytest.approx(evaluate["first_box_auc"])
    assert parent["auc"] == pytest.approx(evaluate["auc"])
    names = {Path(a).name for a in artifacts}
    assert {"success_plot.png", "precision_plot.png"} <= names
    assert any(a.startswith("data/") for a in artifacts)  # the dataset summary


def test_a_finished_train_run_keeps_no_ownership_tags(pipeline) -> None:
    """The owner and its heartbeat are bookkeeping of a run being continued: gone when it ends."""
    tags = pipeline[1]["train"].data.tags
    assert "seqtrack.heartbeat" not in tags and "seqtrack.owner" not in tags
