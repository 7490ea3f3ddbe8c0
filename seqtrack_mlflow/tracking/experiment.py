"""Where runs land: the experiment and store a run writes to, and the experiment's description and kind.

MLflow 3's UI opens an experiment in its GenAI view (traces, token usage) unless the experiment tag
`mlflow.experimentKind` says `custom_model_development` (its "Model training" runs view), so the project
marks the experiments its runs land in as model training, and describes them, where nobody did before.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import mlflow
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.tracking.logger import DESCRIPTION_TAG

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # what MLflow's UI reads to pick the experiment's view
MODEL_TRAINING_KIND = "custom_model_development"  # its "Model training" view
EXPERIMENT_DESCRIPTION = (
    "SeqTrack visual object tracker (seqtrack-mlflow): training and evaluation runs.\n\n"
    "Each `main` run is a parent with nested `select_data` (the data index and summary), `train` "
    "(metrics per report and epoch, checkpoints under checkpoints/, the tracker as the model `model`) and "
    "`evaluate` (AUC, precision, plots) runs: expand a parent run to see them. A `sweep` run holds its "
    "trials' train and evaluate runs the same way; standalone steps are runs of their own."
)


@dataclass(frozen=True)
class Placement:
    """The experiment and store a run writes to, as the console names them."""

    experiment_name: str
    experiment_id: str
    store: str  # the tracking URI, any password hidden
    default_store: bool  # ./mlflow.db of this folder: MLflow's commands find it without MLFLOW_TRACKING_URI

    @property
    def remote(self) -> bool:
        return self.store.startswith(("http://", "https://"))


def shown_uri(uri: str) -> str:
    """The URI with its password (user:password@host) replaced by *** (it is printed)."""
    parts = urlsplit(uri)
    if not parts.password:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def is_default_store(uri: str, folder: Path | None = None) -> bool:
    """Whether `uri` is MLflow's default store for `folder` (the current one): its ./mlflow.db."""
    if not os.environ.get("MLFLOW_TRACKING_URI") and not mlflow.tracking.is_tracking_uri_set():
        return True
    here = (folder or Path.cwd()).resolve() / "mlflow.db"
    return uri in (f"sqlite:///{here}", "sqlite:///mlflow.db")


def missing_experiment_tags(tags: dict[str, str]) -> dict[str, str]:
    """The description and kind an experiment lacks; a description or kind someone set stays."""
    wanted = {DESCRIPTION_TAG: EXPERIMENT_DESCRIPTION, EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND}
    return {k: v for k, v in wanted.items() if not tags.get(k)}


def mark_experiment(experiment_id: str) -> Placement | None:
    """Describe the experiment and mark it as model training where it is not yet; where runs land.
    None when the store does not answer: the run goes on (it keeps what it cannot send, `RunLogger`)."""
    client = MlflowClient()
    try:
        experiment = client.get_experiment(experiment_id)
    except Exception:  # noqa: BLE001 - the server went away right after the run started
        return None
    try:
        for key, value in missing_experiment_tags(dict(experiment.tags)).items():
            client.set_experiment_tag(experiment_id, key, value)
    except Exception:  # noqa: BLE001 - a shared server may refuse a user experiment edits, or go away
        pass
    uri = mlflow.get_tracking_uri()
    return Placement(experiment.name, experiment.experiment_id, shown_uri(uri), is_default_store(uri))


def run_placement(run_id: str) -> Placement | None:
    """Where run `run_id` is: its experiment and this process's store; None when the store does not say
    (it went away after the run ended: the closing lines are a courtesy, not worth an error)."""
    client = MlflowClient()
    try:
        experiment = client.get_experiment(client.get_run(run_id).info.experiment_id)
    except Exception:  # noqa: BLE001 - any store failure means the same: nothing to point at
        return None
    uri = mlflow.get_tracking_uri()
    return Placement(experiment.name, experiment.experiment_id, shown_uri(uri), is_default_store(uri))
