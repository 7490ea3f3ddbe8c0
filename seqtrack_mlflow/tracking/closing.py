"""The console's first and last lines about MLflow: where the runs land, and what to do after a run
(open the UI, find the run ids and checkpoints, download one). Pure: values in, lines out."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from seqtrack_mlflow.tracking.experiment import Placement

UI_ADDRESS = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default


def start_line(where: Placement) -> str:
    """Which experiment (name, id) and store a run writes to: the console's first MLflow line."""
    return f"MLflow: experiment '{where.experiment_name}' (id {where.experiment_id}) in {where.store}"


def _env(where: Placement) -> str:
    """The prefix MLflow's own commands need to find a store other than ./mlflow.db of this folder."""
    return "" if where.default_store else f"MLFLOW_TRACKING_URI={where.store} "


def _address(store: str) -> str:
    """A tracking server's address for a browser (no user or password: the browser asks)."""
    parts = urlsplit(store)
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1])).rstrip("/")


def registered_lines(model_uri: str, train_run_id: str, experiment_name: str | None = None) -> list[str]:
    """A registered tracker (main, sweep): its `models:/` URI and the command to try it with."""
    into = f"--experiment-name {experiment_name} " if experiment_name else ""
    return [
        f"registered model: {model_uri} (train run {train_run_id})",
        f"try it: mlflow run . --env-manager local {into}-e track -P video=<your video> -P box=x,y,w,h "
        f"-P checkpoint={model_uri}",
    ]


def closing_lines(
    where: Placement,
    run: tuple[str, str | None],
    nested: Sequence[tuple[str, str | None]] = (),
    checkpoints: str | None = None,
    checkpoint: str | None = None,
    registered: tuple[str, str] | None = None,
) -> list[str]:
    """The lines a run ends with. `run`/`nested`: (name, run id) of the top run and its children;
    `checkpoints`: the `runs:/<id>/checkpoints/` folder; `checkpoint`: one file there to download;
    `registered`: (models:/ URI, train run id) of a registered tracker, last."""
    name, run_id = run
    if run_id is None:  # the run was not tracked (a DDP rank other than 0): nothing to point at
        return []
    children = ", ".join(f"{n} {i}" for n, i in nested if i)
    lines = [
        start_line(where),
        f"runs: {name} {run_id}" + (f" (nested: {children})" if children else ""),
    ]
    page = f"#/experiments/{where.experiment_id}/runs/{run_id}"
    if where.remote:
        lines.append(f"see them: open {_address(where.store)}/{page}")
    else:
        lines.append(f"see them: mlflow ui --backend-store-uri {where.store}, then open {UI_ADDRESS}/{page}")
    if checkpoints:
        lines.append(f"checkpoints: {checkpoints}")
    if checkpoint or checkpoints:
        target = checkpoint or checkpoints
        lines.append(f"download: {_env(where)}mlflow artifacts download -u {target} -d .")
    if registered:  # the try-it run in the same experiment (MLflow's Default, id 0, needs no flag)
        lines += registered_lines(*registered, where.experiment_name if where.experiment_id != "0" else None)
    return lines
