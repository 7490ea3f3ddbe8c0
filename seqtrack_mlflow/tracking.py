"""MLflow helpers: run context, rank-0-only logging, params that never clash, asynchronous metrics.

`mlflow run` logs every `-P` value as a string before our script starts, and MLflow refuses to log a
key twice with another string form (`1e-4` vs `0.0001`). `RunLogger.log_params` therefore logs only
the keys the run does not have yet.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

PARAM_VALUE_LIMIT = 6000  # MLflow's param value length limit


def flatten(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """{'lr': 1e-4} -> {'train.lr': 1e-4}; an empty prefix keeps the names."""
    return {f"{prefix}.{k}" if prefix else k: v for k, v in values.items()}


def git_commit(path: Path | None = None) -> str:
    """The project's git commit, or 'unknown' outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=path or Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class RunLogger:
    """Logs to the active MLflow run, or does nothing (DDP ranks other than 0, or no run)."""

    def __init__(self, run_id: str | None):
        self.run_id = run_id
        self._client = MlflowClient() if run_id else None

    @property
    def enabled(self) -> bool:
        return self.run_id is not None

    def existing_params(self) -> dict[str, str]:
        if not self._client:
            return {}
        return dict(self._client.get_run(self.run_id).data.params)

    def log_params(self, params: Mapping[str, Any]) -> dict[str, str]:
        """Log the keys the run does not hold yet.

        Where the run already holds a key with a value that means something else (a `-P epochs=0`
        "preset default" placeholder logged by `mlflow run`), the effective value goes to
        `effective.<key>`, so every setting's real value is on the run. Returns those keys.
        """
        if not self._client:
            return {}
        existing = self.existing_params()
        new = {k: _param_str(v) for k, v in params.items() if k not in existing}
        differing = {k: existing[k] for k, v in params.items() if k in existing and not _same(existing[k], v)}
        new.update({f"effective.{k}": _param_str(params[k]) for k in differing})
        new = {k: v for k, v in new.items() if k not in existing}
        if new:
            mlflow.log_params(new, run_id=self.run_id)
        return differing

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self._client:
            for key, value in tags.items():
                self._client.set_tag(self.run_id, key, str(value))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Asynchronous: the training loop never waits for the tracking store.

        Through the client, not `mlflow.log_metrics(run_id=...)`, which first reads the whole run
        from the store (a blocking 10-30 ms query on every call).
        """
        if self._client:
            now = int(time.time() * 1000)
            batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
            self._client.log_batch(self.run_id, metrics=batch, synchronous=False)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self._client:
            mlflow.log_artifact(str(path), artifact_path=artifact_path, run_id=self.run_id)

    def log_dict(self, values: dict, artifact_file: str) -> None:
        if self._client:
            mlflow.log_dict(values, artifact_file, run_id=self.run_id)

    def flush(self) -> None:
        if self._client:
            mlflow.flush_async_logging()


def _same(logged: str, value: Any) -> bool:
    """`1e-4` and 0.0001, `true` and True, `8` and 8 are the same setting."""
    if logged == _param_str(value):
        return True
    if isinstance(value, bool):
        return logged.strip().lower() == str(value).lower()
    if isinstance(value, (int, float)):
        try:
            return float(logged) == float(value)
        except ValueError:
            return False
    return False


def _param_str(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text[:PARAM_VALUE_LIMIT]


@contextlib.contextmanager
def run_context(
    run_name: str,
    *,
    run_id: str | None = None,
    nested: bool = False,
    system_metrics: bool = False,
    enabled: bool = True,
) -> Iterator[RunLogger]:
    """Start (or attach to) an MLflow run and yield its logger.

    Under `mlflow run` the process finds its run in MLFLOW_RUN_ID and attaches to it; a nested call
    opens a child of the active run. A run that raises is ended FAILED, so no RUNNING run is left.
    """
    if not enabled:
        yield RunLogger(None)
        return
    if system_metrics:
        _require_psutil()
    with mlflow.start_run(
        run_id=run_id, run_name=None if run_id else run_name, nested=nested, log_system_metrics=system_metrics
    ) as run:
        logger = RunLogger(run.info.run_id)
        try:
            yield logger
        finally:
            logger.flush()


def _require_psutil() -> None:
    try:
        import psutil  # noqa: F401
    except ImportError as exc:  # pragma: no cover - psutil is a declared dependency
        raise RuntimeError(
            "system metrics need psutil: pip install psutil, or pass -P system_metrics=false"
        ) from exc
