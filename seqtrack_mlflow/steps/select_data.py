"""The select_data step: resolve the source and classes, build the index and the dataset summary
(`datasets.selection`), and record them in MLflow (params, tags, artifacts, and the index as a dataset
input).

It is the one place that resolves the data: in `main`, `train` and `evaluate` take its index by run id
(`-P data=<run_id>`), so each run shows which data it used; standalone they select the data themselves.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqtrack_mlflow.config import DataConfig
from seqtrack_mlflow.datasets.selection import (
    Selection,
    load_selection,
    preflight,
    select,
    used_data_settings,
)
from seqtrack_mlflow.tracking import RunLogger, download_selection, run_context

DATA_RUN_TAG = "seqtrack.data_run_id"


def selection_from_run(data_run: str, out_dir: Path) -> Selection:
    """The selection a select_data run recorded: its index and summary, downloaded into `out_dir`."""
    run_id, index_dir, summary_path = download_selection(data_run, out_dir / "data_run")
    return load_selection(index_dir, summary_path, out_dir, run_id)


def log_selection(
    selection: Selection, logger: RunLogger, out_dir: Path, *, context: str, save_index: bool
) -> None:
    """Params, tags, summary artifacts and the MLflow dataset input for a run that used this selection."""
    if not logger.enabled:
        return
    logger.set_tags(
        {
            "data.source": selection.source,
            "data.classes": ",".join(selection.classes),
            **({DATA_RUN_TAG: selection.run_id} if selection.run_id else {}),
        }
    )
    logger.log_params(
        {
            **dataclasses.asdict(used_data_settings(selection.data)),
            "selected_classes": ",".join(selection.classes),
            "data_source": selection.source,
        }
    )
    for path in selection.summary_paths:
        logger.log_artifact(path)
    if save_index:
        index_dir = out_dir / "index"
        _save_quietly(selection.index, index_dir)
        logger.log_artifacts(index_dir, "index")
    logger.log_dataset(selection.index, selection.name, context)


def _save_quietly(index: Any, path: Path) -> None:
    """save_to_disk without its progress bar (eight rows do not need one in the training log)."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        index.save_to_disk(str(path))
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


@dataclass(frozen=True)
class SelectResult:
    run_id: str | None
    selection: Selection


def run_select_data(data: DataConfig, seed: int, output_dir: Path, *, nested: bool = False) -> SelectResult:
    """The select_data run: logs its settings, the index (as an artifact and a dataset input), the summary."""
    preflight(data)
    with run_context("select_data", nested=nested) as logger:
        out_dir = output_dir / (logger.run_id or "offline")
        logger.log_params({"seed": seed, "output_dir": str(output_dir)})
        selection = select(data, seed, out_dir)
        log_selection(selection, logger, out_dir, context="training", save_index=True)
        totals = selection.summary["totals"]
        logger.describe(
            f"Selected {' + '.join(selection.classes)} (seed {seed}) from {selection.label}: "
            f"{totals['train']['sequences']} training and {totals['test']['sequences']} test sequences"
        )
        return SelectResult(logger.run_id, dataclasses.replace(selection, run_id=logger.run_id))
