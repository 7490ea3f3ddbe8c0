"""The select_data step: resolve the source and classes, build the index and the dataset summary,
and record them in MLflow (params, tags, artifacts, and the index as a dataset input)."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqtrack_mlflow.config import DataConfig
from seqtrack_mlflow.data.lasot import Sequence
from seqtrack_mlflow.data.selection import (
    build_index,
    resolve_classes,
    sequences_from_index,
    summarize,
    write_summary,
)
from seqtrack_mlflow.data.sources import candidate_classes, local_root, prepare_root, resolve_source
from seqtrack_mlflow.tracking import RunLogger


@dataclass(frozen=True)
class Selection:
    source: str
    root: Path
    classes: list[str]
    index: Any  # datasets.Dataset
    summary: dict[str, Any]
    summary_paths: tuple[Path, ...]

    def sequences(self, split: str | None) -> list[Sequence]:
        return sequences_from_index(self.index, split)

    @property
    def info(self) -> dict[str, Any]:
        """What checkpoints store about the data (plain values, weights_only-safe)."""
        return {
            "source": self.source,
            "root": str(self.root),
            "classes": list(self.classes),
            "summary": self.summary,
        }


def preflight(data: DataConfig) -> None:
    """Refuse a bad source or a missing LaSOT root before a run starts or anything is written."""
    if resolve_source(data) == "local":
        local_root(data)


def select(data: DataConfig, seed: int, out_dir: Path | None) -> Selection:
    """Pure data work (no MLflow): the selected classes, their index and (given a folder) summary files."""
    source = resolve_source(data)
    data = dataclasses.replace(data, source=source)
    classes = resolve_classes(data.classes, candidate_classes(data), seed)
    root = prepare_root(data, classes, seed)
    index = build_index(root, classes)
    summary = summarize(index, source, seed, classes)
    paths: tuple[Path, ...] = ()
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = write_summary(summary, out_dir)
    return Selection(source, root, classes, index, summary, paths)


def log_selection(selection: Selection, logger: RunLogger, out_dir: Path, *, save_index: bool) -> None:
    """Tags, summary artifacts and the MLflow dataset input for a run that used this selection."""
    if not logger.enabled:
        return
    import mlflow

    logger.set_tags({"data.source": selection.source, "data.classes": ",".join(selection.classes)})
    logger.log_params({"selected_classes": ",".join(selection.classes), "data_source": selection.source})
    for path in selection.summary_paths:
        logger.log_artifact(path)
    if save_index:
        index_dir = out_dir / "index"
        _save_quietly(selection.index, index_dir)
        mlflow.log_artifacts(str(index_dir), artifact_path="index", run_id=logger.run_id)
    name = f"lasot-{selection.source}-{'-'.join(selection.classes)}"
    with warnings.catch_warnings():
        # MLflow's schema inference warns about integer columns (the index has no missing values)
        # and pandas deprecations inside MLflow: noise for a user.
        warnings.simplefilter("ignore")
        dataset = mlflow.data.from_huggingface(selection.index, name=name)
        mlflow.log_input(dataset, context="training")


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


def run_select_data(data: DataConfig, seed: int, out_dir: Path, logger: RunLogger) -> Selection:
    logger.log_params({"seed": seed, **dataclasses.asdict(data)})
    selection = select(data, seed, out_dir)
    log_selection(selection, logger, out_dir, save_index=True)
    return selection
