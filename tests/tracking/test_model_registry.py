"""The registry's and the pyfunc model's user-facing edges, in a real SQLite store and without loading a
model (the model itself, logged, served and registered: tests/e2e/test_tracker_model.py)."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.tracking import RunLogger, register_run_tracker
from seqtrack_mlflow.tracking.registry import REGISTERED_MODEL_TAG, REGISTERED_VERSION_TAG
from seqtrack_mlflow.tracking.tracker_model import TrackerInputError, TrackerModel


def test_a_run_without_a_tracker_is_one_warning_and_registers_nothing(
    mlflow_uri: str, capsys: pytest.CaptureFixture
) -> None:
    client = MlflowClient()
    parent, train = client.create_run("0").info.run_id, client.create_run("0").info.run_id
    logger = RunLogger(parent)
    assert register_run_tracker(logger, train, "seqtrack", {}) is None
    assert register_run_tracker(logger, train, "none", {}) is None  # model_name=none: not even tried
    logger.finish()
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"warning: nothing registered as 'seqtrack': train run {train} logged no tracker model (model): "
        "train again to register one"
    )
    tags = client.get_run(parent).data.tags
    assert REGISTERED_MODEL_TAG not in tags and REGISTERED_VERSION_TAG not in tags
    assert client.search_registered_models() == []


def test_a_bad_request_is_a_value_error_that_serving_answers_with_400() -> None:
    model = TrackerModel()
    model.tracker = None  # the request is refused before any tracking
    with pytest.raises(TrackerInputError) as caught:
        model.predict(None, {"frames": ["AAAA"]})
    assert isinstance(caught.value, ValueError) and caught.value.get_http_status_code() == 400
    assert caught.value.message.startswith('the request has no box: give "box": [x, y, w, h]')
