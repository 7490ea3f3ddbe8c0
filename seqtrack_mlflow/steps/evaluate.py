"""The evaluate step: a checkpoint -> SeqTrack tracker on the selected classes' test split -> LaSOT
metrics (overall and per class), result files, a per-sequence table and plots, logged to MLflow."""

from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqtrack_mlflow.config import ConfigError, DataConfig, TrackerConfig, TrainSettings
from seqtrack_mlflow.evaluation.metrics import sequence_curves, summarize
from seqtrack_mlflow.evaluation.plots import plot_precision, plot_success
from seqtrack_mlflow.evaluation.tracker import SeqTrackTracker, track_sequence
from seqtrack_mlflow.steps.select_data import log_selection, preflight, select
from seqtrack_mlflow.tracking import RunLogger, git_commit, run_context
from seqtrack_mlflow.train import checkpoints
from seqtrack_mlflow.train.distributed import pick_device

SPLITS = ("test", "train", "all")


@dataclass(frozen=True)
class EvalResult:
    run_id: str | None
    metrics: dict[str, float]
    per_sequence: list[dict[str, Any]]
    out_dir: Path


def write_result_file(boxes: np.ndarray, path: Path) -> Path:
    """LaSOT result format: one `x,y,w,h` line per frame, frame 1 included."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, boxes, fmt="%.2f", delimiter=",")
    return path


def evaluation_data(
    settings: TrainSettings, state: dict[str, Any], override: DataConfig | None
) -> DataConfig:
    """The training run's data source and its resolved classes, unless the user names others."""
    info = state.get("dataset_info", {})
    trained_classes = ",".join(info.get("classes", [])) or settings.data.classes
    # The source the training run resolved ("auto" became local or hub there).
    base = dataclasses.replace(
        settings.data, classes=trained_classes, source=info.get("source", settings.data.source)
    )
    if override is None:
        return base
    changes = {f.name: getattr(override, f.name) for f in dataclasses.fields(DataConfig)}
    defaults = DataConfig()
    changes = {k: v for k, v in changes.items() if v != getattr(defaults, k)}
    return dataclasses.replace(base, **changes)


def run_evaluate(
    checkpoint: str,
    tracker_cfg: TrackerConfig,
    *,
    split: str = "test",
    data_override: DataConfig | None = None,
    device: str = "auto",
    output_dir: Path = Path("outputs"),
    nested: bool = False,
    train_run_id: str | None = None,
) -> EvalResult:
    if split not in SPLITS:
        raise ConfigError(f"split={split!r} is not known: use one of {', '.join(SPLITS)}")
    if tracker_cfg.max_frames < 0:
        raise ConfigError(f"max_frames={tracker_cfg.max_frames} is invalid: use 0 (whole sequences) or more")
    torch_device = pick_device(device)
    path, ckpt_run = checkpoints.resolve_checkpoint(checkpoint, output_dir / "downloads")
    state = checkpoints.load_checkpoint(path)
    settings = TrainSettings.from_dict(state["config"])
    data = evaluation_data(settings, state, data_override)
    preflight(data)
    with run_context("evaluate", nested=nested, system_metrics=False) as logger:
        out_dir = output_dir / (logger.run_id or "offline")
        selection = select(data, settings.train.seed, out_dir)
        sequences = selection.sequences(None if split == "all" else split)
        if not sequences:
            raise ConfigError(
                f"no {split} sequences for classes {selection.classes}: choose -P split or -P classes"
            )
        logger.log_params(
            {
                "checkpoint": checkpoint,
                "split": split,
                "seed": settings.train.seed,
                "preset": settings.preset,
                "patch_size": settings.model.patch_size,
                **dataclasses.asdict(tracker_cfg),
            }
        )
        logger.set_tags(
            {
                "seqtrack.train_run_id": train_run_id or ckpt_run or state.get("mlflow_run_id", ""),
                "seqtrack.checkpoint_epoch": state.get("epoch", ""),
                "seqtrack.device": str(torch_device),
                "seqtrack.git_commit": git_commit(),
            }
        )
        log_selection(selection, logger, out_dir, save_index=False)
        tracker = SeqTrackTracker.from_checkpoint(state, tracker_cfg, torch_device)
        metrics, rows, curves = _track_all(tracker, sequences, tracker_cfg, out_dir)
        _publish(logger, metrics, rows, curves, out_dir, str(path.name))
        return EvalResult(logger.run_id, metrics, rows, out_dir)


def _track_all(
    tracker: SeqTrackTracker, sequences: list, cfg: TrackerConfig, out_dir: Path
) -> tuple[dict[str, float], list[dict[str, Any]], dict[str, list[dict]]]:
    rows: list[dict[str, Any]] = []
    by_class: dict[str, list[dict]] = {}
    baseline: list[dict] = []
    frames = seconds = 0.0
    for seq in sequences:
        boxes, fps = track_sequence(tracker, seq, cfg.max_frames)
        n = len(boxes)
        write_result_file(boxes, out_dir / "results" / f"{seq.name}.txt")
        curve = sequence_curves(boxes, seq.boxes[:n], seq.visible[:n])
        one = summarize([curve])
        by_class.setdefault(seq.class_name, []).append(curve)
        # Reference point: a "tracker" that keeps the first box, scored on the same frames.
        first_box = np.repeat(seq.boxes[:1], n, axis=0)
        baseline.append(sequence_curves(first_box, seq.boxes[:n], seq.visible[:n]))
        rows.append(
            {
                "sequence": seq.name,
                "class": seq.class_name,
                "frames": n,
                "auc": one["auc"],
                "precision": one["precision"],
                "norm_precision": one["norm_precision"],
                "fps": fps,
            }
        )
        if fps > 0:
            frames += n - 1
            seconds += (n - 1) / fps
    all_curves = [c for cs in by_class.values() for c in cs]
    overall = summarize(all_curves)
    metrics = {k: float(overall[k]) for k in ("auc", "precision", "norm_precision")}
    metrics["fps"] = frames / seconds if seconds > 0 else 0.0
    first_box = summarize(baseline)
    metrics.update({f"first_box_{k}": float(first_box[k]) for k in ("auc", "precision", "norm_precision")})
    for cls, cs in by_class.items():
        s = summarize(cs)
        metrics.update({f"{k}_{cls}": float(s[k]) for k in ("auc", "precision", "norm_precision")})
    groups = {"all": all_curves, **by_class} if len(by_class) > 1 else {"all": all_curves}
    return metrics, rows, groups


def _publish(
    logger: RunLogger,
    metrics: dict[str, float],
    rows: list[dict[str, Any]],
    curves: dict[str, list[dict]],
    out_dir: Path,
    checkpoint_name: str,
) -> None:
    table = out_dir / "per_sequence.csv"
    with table.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summaries = {name: summarize(cs) for name, cs in curves.items()}
    success = plot_success(summaries, out_dir / "success_plot.png")
    precision = plot_precision(summaries, out_dir / "precision_plot.png")
    print(
        f"LaSOT {checkpoint_name}: AUC {metrics['auc']:.2f}  P {metrics['precision']:.2f}  "
        f"P_norm {metrics['norm_precision']:.2f}  ({metrics['fps']:.1f} FPS, {len(rows)} sequences)"
    )
    if not logger.enabled:
        return
    logger.log_metrics(metrics)
    import mlflow

    mlflow.log_artifacts(str(out_dir / "results"), artifact_path="results", run_id=logger.run_id)
    for path in (table, success, precision):
        logger.log_artifact(path)
