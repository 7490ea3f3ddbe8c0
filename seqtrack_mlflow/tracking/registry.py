"""The Model Registry: a train run's tracker registered under a name (`main`, `sweep`), and a
`models:/<name>/<version>` or `models:/<name>@<alias>` reference resolved to its checkpoint.

A registered version points at the train run's logged model (`tracker_model`): its source run is the
train run, its artifacts hold the final checkpoint, so a registered name works wherever a checkpoint
does (evaluate, track, train's pretrained and resume) and `mlflow models serve` serves it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.messages import first_line
from seqtrack_mlflow.tracking.artifacts import download
from seqtrack_mlflow.tracking.health import say
from seqtrack_mlflow.tracking.logger import RunLogger
from seqtrack_mlflow.tracking.store import TrackingError, require_store_for, store_uri
from seqtrack_mlflow.tracking.tracker_model import MODEL_NAME

MODELS_PREFIX = "models:/"
MODEL_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w\-]+))/?")
SHOWN = 10  # registered names or versions listed in an error line
REGISTERED_MODEL_TAG = "seqtrack.registered_model"  # on the run that registered: the name...
REGISTERED_VERSION_TAG = "seqtrack.registered_model_version"  # ... and the version


@dataclass(frozen=True)
class RegisteredTracker:
    name: str
    version: str
    run_id: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def is_model_uri(text: str) -> bool:
    return text.startswith(MODELS_PREFIX)


def run_model_id(run_id: str, client: MlflowClient | None = None) -> str | None:
    """The id of the latest model named `model` that run `run_id` logged (None: it logged none)."""
    client = client or MlflowClient()
    outputs = client.get_run(run_id).outputs
    ids = [o.model_id for o in (outputs.model_outputs if outputs else [])]
    models = [client.get_logged_model(i) for i in ids]
    named = [m for m in models if m.name == MODEL_NAME]
    return max(named, key=lambda m: m.creation_timestamp).model_id if named else None


def register_tracker(run_id: str, name: str, tags: dict[str, str] | None = None) -> RegisteredTracker:
    """Register the tracker train run `run_id` logged as a new version of `name` (created if new).
    A run without one, or a store that refuses, is a TrackingError line."""
    client = MlflowClient()
    try:
        model_id = run_model_id(run_id, client)
    except Exception as exc:  # noqa: BLE001 - the store's error, in one line
        raise TrackingError(f"cannot read train run {run_id} in {store_uri()}: {first_line(exc)}") from None
    if model_id is None:
        raise TrackingError(
            f"train run {run_id} logged no tracker model ({MODEL_NAME}): train again to register one"
        )
    try:
        _create_registered_model(client, name)
        version = client.create_model_version(
            name, f"models:/{model_id}", run_id=run_id, tags=tags, model_id=model_id
        )
    except Exception as exc:  # noqa: BLE001 - the store's error, in one line
        raise TrackingError(
            f"cannot register run {run_id}'s tracker as {name!r}: {first_line(exc)}"
        ) from None
    return RegisteredTracker(name, str(version.version), run_id)


def _create_registered_model(client: MlflowClient, name: str) -> None:
    """`name` in the registry (what `mlflow.register_model` does first, without its console lines)."""
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise


def register_run_tracker(
    parent: RunLogger, run_id: str | None, name: str, tags: dict[str, str]
) -> RegisteredTracker | None:
    """`main`'s and `sweep`'s last act: register train run `run_id`'s tracker as a new version of `name`
    (`none`: skipped), tagged `tags`, and tag `parent` with the name and version. Their work is done and
    recorded: a tracker that cannot be registered is one warning line, not a failed run."""
    if name.lower() == "none" or not (parent.enabled and run_id):
        return None
    try:
        registered = register_tracker(run_id, name, tags)
    except TrackingError as exc:
        say(f"warning: nothing registered as {name!r}: {first_line(exc)}")
        return None
    parent.set_tags({REGISTERED_MODEL_TAG: registered.name, REGISTERED_VERSION_TAG: registered.version})
    return registered


def model_version(uri: str, client: MlflowClient | None = None) -> ModelVersion:
    """The version `models:/<name>/<version>` or `models:/<name>@<alias>` names; an unknown name,
    version or alias is one TrackingError line listing what the registry holds."""
    match = MODEL_URI.fullmatch(uri)
    if match is None:
        raise TrackingError(
            f"{uri!r} is not a registered model reference: "
            "use models:/<name>/<version> or models:/<name>@<alias>"
        )
    require_store_for(uri)
    client = client or MlflowClient()
    name, number, alias = match["name"], match["version"], match["alias"]
    try:
        client.get_registered_model(name)
    except Exception:  # noqa: BLE001 - unknown name (or an unreachable store): list what there is
        raise TrackingError(_unknown_name(uri, name, client)) from None
    try:
        return (
            client.get_model_version(name, number)
            if number
            else client.get_model_version_by_alias(name, alias)
        )
    except Exception:  # noqa: BLE001 - unknown version or alias
        versions = [str(v.version) for v in client.search_model_versions(f"name = '{name}'")]
        held = ", ".join(sorted(versions, key=int)[-SHOWN:]) or "none"
        what = f"version {number}" if number else f"alias @{alias}"
        raise TrackingError(
            f"{uri}: registered model {name!r} has no {what} in {store_uri()} (versions: {held}): "
            f"give one of them, models:/{name}/<version>"
        ) from None


def _unknown_name(uri: str, name: str, client: MlflowClient) -> str:
    try:
        names = [m.name for m in client.search_registered_models(max_results=SHOWN + 1)]
    except Exception as exc:  # noqa: BLE001 - the store does not answer
        return f"{uri}: the tracking store {store_uri()} cannot be read ({first_line(exc)})"
    listed = ", ".join(names[:SHOWN]) + (", ..." if len(names) > SHOWN else "") if names else "none"
    return (
        f"{uri}: no registered model {name!r} in the tracking store {store_uri()} (registered: {listed}): "
        "give a registered name (main registers its tracker as seqtrack) or set MLFLOW_TRACKING_URI"
    )


def download_registered_checkpoint(uri: str, dst: Path) -> tuple[Path, str]:
    """The checkpoint file a registered version holds (downloaded under `dst`) and its source run."""
    version = model_version(uri)
    folder = dst / f"{version.name}-v{version.version}"
    try:
        artifacts = download(f"models:/{version.name}/{version.version}/artifacts", folder)
    except Exception as exc:  # noqa: BLE001 - MLflow raises several types for a missing artifact
        raise TrackingError(
            f"{uri}: its model holds no artifacts/ folder ({first_line(exc)}): register a train run's tracker"
        ) from None
    files = sorted(p for p in artifacts.iterdir() if p.is_file())
    if len(files) != 1:
        raise TrackingError(
            f"{uri}: its model's artifacts/ holds {len(files)} files, not one checkpoint: register a "
            "train run's tracker"
        )
    return files[0], version.run_id or ""


__all__ = [
    "REGISTERED_MODEL_TAG",
    "REGISTERED_VERSION_TAG",
    "RegisteredTracker",
    "download_registered_checkpoint",
    "is_model_uri",
    "model_version",
    "register_run_tracker",
    "register_tracker",
    "run_model_id",
]
