"""Where runs land: the experiment's description and kind, and the console's first line naming them."""

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.tracking import run_context
from seqtrack_mlflow.tracking.experiment import (
    EXPERIMENT_KIND_TAG,
    MODEL_TRAINING_KIND,
    shown_uri,
)

DESCRIPTION = "mlflow.note.content"


def test_a_new_experiment_is_described_and_marked_model_training(
    mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "seqtrack")  # as `mlflow run --experiment-name seqtrack`
    with run_context("main") as parent, run_context("train", nested=True):
        pass
    experiment = MlflowClient().get_experiment_by_name("seqtrack")
    assert mlflow.get_run(parent.run_id).info.experiment_id == experiment.experiment_id
    # MLflow 3's UI shows its "Model training" runs view for this kind, not the GenAI one.
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
    assert "nested" in experiment.tags[DESCRIPTION] and "select_data" in experiment.tags[DESCRIPTION]
    err = capsys.readouterr().err.splitlines()
    starts = [line for line in err if line.startswith("MLflow: experiment")]
    assert starts == [f"MLflow: experiment 'seqtrack' (id {experiment.experiment_id}) in {mlflow_uri}"]


def test_a_description_and_kind_someone_set_stay(mlflow_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client = MlflowClient()
    experiment_id = client.create_experiment(
        "theirs", tags={DESCRIPTION: "my notes", EXPERIMENT_KIND_TAG: "genai_development"}
    )
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)  # as `mlflow run --experiment-id`
    with run_context("evaluate"):
        pass
    tags = client.get_experiment(experiment_id).tags
    assert tags[DESCRIPTION] == "my notes" and tags[EXPERIMENT_KIND_TAG] == "genai_development"


def test_an_existing_experiment_without_them_gets_them(mlflow_uri: str) -> None:
    with run_context("train") as run:  # the Default experiment, which MLflow created
        pass
    experiment_id = mlflow.get_run(run.run_id).info.experiment_id
    tags = MlflowClient().get_experiment(experiment_id).tags
    assert tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND and tags[DESCRIPTION]


def test_a_store_password_is_never_shown() -> None:
    assert shown_uri("http://ann:s3cret@mlflow.lab:5000") == "http://ann:***@mlflow.lab:5000"
    assert shown_uri("postgresql://u:pw@db:5432/mlflow") == "postgresql://u:***@db:5432/mlflow"
    assert shown_uri("sqlite:////data/mlflow.db") == "sqlite:////data/mlflow.db"
