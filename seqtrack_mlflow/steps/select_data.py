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

from seqtrack_mlflow.config import DataConfig
from seqtrack_mlflow.datasets.selection import Selection, preflight, select
from seqtrack_mlflow.steps.lineage import log_selection
from seqtrack_mlflow.tracking import run_context


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
        others = ", ".join(
            f"{p.label} {p.split} ({p.summary['sequences']} sequences)" for p in selection.parts
        )
        lasot = (
            f"{' + '.join(selection.classes)} (seed {seed}) from {selection.dataset.label}: "
            f"{totals['train']['sequences']} training and {totals['test']['sequences']} test sequences"
        )
        if not selection.classes:
            lasot = f"{others} (seed {seed})"
        elif others:
            lasot += f"; with {others}"
        logger.describe(f"Selected {lasot}")
        return SelectResult(logger.run_id, dataclasses.replace(selection, run_id=logger.run_id))
