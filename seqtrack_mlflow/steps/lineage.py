"""What a step records about the data it used, and fetching the data another run recorded: shared by
the steps (not a step itself), so every run shows its lineage the same way."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from seqtrack_mlflow.datasets.mix import LASOT, dataset_name, save_parts
from seqtrack_mlflow.datasets.selection import Selection, load_selection, used_data_settings
from seqtrack_mlflow.datasets.selection import save_index as write_index
from seqtrack_mlflow.model.factory import TrainedWeights
from seqtrack_mlflow.tracking import RunLogger, download_selection, git_commit

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
            **({"data.datasets": ",".join(selection.data.mix)} if selection.parts else {}),
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
        write_index(selection.index, index_dir)
        save_parts(selection.parts, index_dir, write_index)  # index/<dataset>/ for each dataset of a mix
        logger.log_artifacts(index_dir, "index")
    if LASOT in selection.data.mix:
        logger.log_dataset(selection.index, selection.name, context)
    for part in selection.parts:
        logger.log_dataset(part.index, dataset_name(part), context)


def checkpoint_tags(trained: TrainedWeights, ckpt_run: str | None, device: torch.device) -> dict[str, str]:
    """Which weights a tracking run used (the train run, epoch, kind) and where it ran."""
    return {
        "seqtrack.train_run_id": ckpt_run or trained.train_run_id,
        "seqtrack.checkpoint_epoch": str(trained.epoch) if trained.epoch is not None else "",
        "seqtrack.checkpoint_kind": "official" if trained.official else "seqtrack-mlflow",
        "seqtrack.device": str(device),
        "seqtrack.git_commit": git_commit(),
    }
