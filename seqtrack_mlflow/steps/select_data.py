"""The select_data step: resolve the source and classes, build the index and the dataset summary,
and record them in MLflow (params, tags, artifacts, and the index as a dataset input).

It is the one place that resolves the data: in `main`, `train` and `evaluate` take its index by run id
(`-P data=<run_id>`), so each run shows which data it used; standalone they select the data themselves.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqtrack_mlflow.config import ConfigError, DataConfig
from seqtrack_mlflow.data.lasot import Sequence
from seqtrack_mlflow.data.selection import (
    RANDOM,
    build_index,
    resolve_classes,
    sequences_from_index,
    summarize,
    write_summary,
)
from seqtrack_mlflow.data.sources import (
    cache_dir_of,
    candidate_classes,
    local_root,
    prepare_root,
    resolve_source,
)
from seqtrack_mlflow.tracking import RunLogger, download_selection, run_context

DATA_RUN_TAG = "seqtrack.data_run_id"


@dataclass(frozen=True)
class Selection:
    source: str
    root: Path
    classes: list[str]
    index: Any  # datasets.Dataset
    summary: dict[str, Any]
    summary_paths: tuple[Path, ...]
    data: DataConfig  # the data settings, with source resolved
    run_id: str | None = None  # the select_data run it came from, where one did

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
            "data_run_id": self.run_id or "",
        }

    @property
    def name(self) -> str:
        return f"lasot-{self.source}-{'-'.join(self.classes)}"

    @property
    def label(self) -> str:
        """How lines, titles and summaries name the data: synthetic data is never called LaSOT."""
        return "synthetic LaSOT-format data" if self.source == "synthetic" else "LaSOT"


def preflight(data: DataConfig) -> None:
    """Refuse a bad source or a missing LaSOT root before a run starts or anything is written."""
    if resolve_source(data) == "local":
        local_root(data)


def used_data_settings(data: DataConfig) -> DataConfig:
    """The data settings as used: `lasot_root` and `cache_dir` resolved to the folders read."""
    local = resolve_source(data) == "local"
    return dataclasses.replace(
        data,
        lasot_root=str(local_root(data)) if local else data.lasot_root,
        cache_dir=str(cache_dir_of(data)),
    )


def select(data: DataConfig, seed: int, out_dir: Path | None, *, announce: bool = True) -> Selection:
    """Pure data work (no MLflow): the selected classes, their index and (given a folder) summary files.
    `announce`: say which classes were selected (and that a seed drew them) on the console."""
    source = resolve_source(data)
    classes = resolve_classes(data.classes, candidate_classes(data), seed)
    if announce:
        print(classes_line(data.classes, classes, seed, source))
    root = prepare_root(data, classes, seed)
    index = build_index(root, classes)
    summary = {**summarize(index, source, seed, classes), "root": str(root), "data": dataclasses.asdict(data)}
    paths: tuple[Path, ...] = ()
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = write_summary(summary, out_dir)
    return Selection(source, root, classes, index, summary, paths, data)


def classes_line(spec: str, classes: list[str], seed: int, source: str) -> str:
    """`classes: airplane + guitar (drawn with seed 8), synthetic data`: what a run trains or tracks on."""
    drawn = f" (drawn with seed {seed})" if RANDOM in spec.lower() else ""
    where = "synthetic LaSOT-format data" if source == "synthetic" else f"LaSOT ({source})"
    return f"classes: {' + '.join(classes)}{drawn}, {where}"


def selection_from_run(data_run: str, out_dir: Path) -> Selection:
    """The selection a select_data run recorded: its index and summary, downloaded into `out_dir`."""
    import datasets

    run_id, index_dir, summary_path = download_selection(data_run, out_dir / "data_run")
    summary = json.loads(summary_path.read_text())
    index = datasets.load_from_disk(str(index_dir))
    return Selection(
        summary["source"],
        Path(summary.get("root", "")),
        list(summary["classes"]),
        index,
        summary,
        write_summary(summary, out_dir),
        DataConfig(**summary.get("data", {})),
        run_id,
    )


def check_same_data(selection: Selection, given: dict[str, Any]) -> None:
    """Data settings given beside `data=<run>` must agree with that run's: one line per conflict."""
    conflicts = [
        f"{k}={v!r} (the data run used {getattr(selection.data, k)!r})"
        for k, v in given.items()
        if getattr(selection.data, k) != v
    ]
    if conflicts:
        raise ConfigError(
            f"data settings conflict with data run {selection.run_id}: {'; '.join(conflicts)}: "
            "drop them or drop -P data"
        )


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
