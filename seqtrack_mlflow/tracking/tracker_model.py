"""The trained tracker as an MLflow pyfunc model, logged by `train` under the name `model` of its run.

    runs:/<train run>/model  (MLflow 3 keeps it as a logged model of the run: models:/m-<id>)
     ├─ MLmodel             python_function flavor; model config = the tracker settings
     │                      (`evaluation.predict.MODEL_SETTINGS`); signature; input example
     ├─ artifacts/epoch_N.ckpt   the final checkpoint, as trained (it loads wherever a checkpoint does)
     ├─ python_model.py     models-from-code: builds `TrackerModel` (no pickled object to trust)
     └─ requirements.txt    torch, timm, numpy, pillow, av, pandas and this package, at the versions here

Loading needs this package installed (`pip install -e .` of this repository): `mlflow models serve
--env-manager local` uses the current environment. The requests and the answer are those of
`evaluation/predict.py`; its `PredictInputError` reaches the caller as `TrackerInputError`, a
ValueError that MLflow's scoring server answers with status 400 and the one line.
"""

from __future__ import annotations

import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, DataType, Schema
from mlflow.types.schema import AnyType, Array

from seqtrack_mlflow.evaluation.predict import PredictInputError, example_request, load_tracker, track_request
from seqtrack_mlflow.tracking.artifacts import no_progress_bar

MODEL_NAME = "model"  # the name (MLflow 2: artifact path) of the model in the train run
CHECKPOINT = "checkpoint"  # the checkpoint's key among the model's artifacts
REQUIREMENTS = ("torch", "timm", "numpy", "pillow", "av", "pandas", "seqtrack-mlflow")
# Written as the model's code (MLflow's models-from-code): loading runs these lines, never a pickle.
MODEL_CODE = (
    '"""SeqTrack tracker (seqtrack-mlflow): the pyfunc model."""\n'
    "from mlflow.models import set_model\n\n"
    "from seqtrack_mlflow.tracking.tracker_model import TrackerModel\n\n"
    "set_model(TrackerModel())\n"
)


class TrackerInputError(MlflowException, ValueError):
    """A request the tracker cannot follow (one line naming the field and the fix): a ValueError for
    Python callers, an INVALID_PARAMETER_VALUE (HTTP 400) for MLflow's scoring server."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


class TrackerModel(PythonModel):
    """The evaluate tracker behind `predict`: {"video" | "frames", "box"} -> one row per frame."""

    def load_context(self, context: Any) -> None:
        checkpoint = Path(context.artifacts[CHECKPOINT])
        self.tracker = load_tracker(checkpoint, context.model_config or {})

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        try:
            return track_request(self.tracker, model_input)
        except PredictInputError as exc:
            raise TrackerInputError(str(exc)) from None


def signature() -> ModelSignature:
    """Every input optional (a missing box is the model's own one-line error, not a schema error); the
    box of any numbers (MLflow's schema would refuse integers for doubles)."""
    inputs = Schema(
        [
            ColSpec(DataType.string, "video", required=False),
            ColSpec(Array(DataType.string), "frames", required=False),
            ColSpec(AnyType(), "box", required=False),
        ]
    )
    outputs = Schema(
        [ColSpec(DataType.long, "frame")]
        + [ColSpec(DataType.double, name) for name in ("x", "y", "w", "h")]
        + [ColSpec(DataType.double, "confidence", required=False)]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def pip_requirements() -> list[str]:
    """What the model needs, at the versions of this environment (a local build tag such as torch's
    `+cu130` dropped: `torch==2.14.1` accepts every build of that release)."""
    pinned = []
    for name in REQUIREMENTS:
        try:
            pinned.append(f"{name}=={version(name).split('+')[0]}")
        except PackageNotFoundError:
            pinned.append(name)
    return pinned


def log_tracker_model(run_id: str, checkpoint: Path, config: dict[str, Any]) -> str:
    """Log the tracker of `checkpoint` with the tracker settings `config` as the model `model` of run
    `run_id` (from any thread, with or without an active run); returns its models:/ URI. What
    `mlflow.pyfunc.log_model` does, with the run named explicitly."""
    with tempfile.TemporaryDirectory(prefix="seqtrack-model-") as tmp, no_progress_bar():
        code = Path(tmp) / "python_model.py"
        code.write_text(MODEL_CODE)
        info = Model.log(
            artifact_path=None,  # deprecated in MLflow 3 (`name` replaces it), yet positional
            name=MODEL_NAME,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            python_model=str(code),
            artifacts={CHECKPOINT: str(checkpoint)},
            model_config=dict(config),
            signature=signature(),
            input_example=example_request(),
            pip_requirements=pip_requirements(),
            flavor_name="pyfunc.ModelFromCode",  # as mlflow.pyfunc.log_model names it
        )
    return info.model_uri


__all__ = [
    "CHECKPOINT",
    "MODEL_NAME",
    "TrackerInputError",
    "TrackerModel",
    "log_tracker_model",
    "pip_requirements",
    "signature",
]
