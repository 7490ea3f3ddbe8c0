"""The evaluate step: a checkpoint -> SeqTrack tracker on the selected classes' test split -> LaSOT
metrics (overall and per class), result files, a per-sequence table and plots, logged to MLflow."""

from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqtrack_mlflow.config import ConfigError, DataConfig, ModelConfig, TrackerConfig, validate_tracker
from seqtrack_mlflow.datasets.selection import check_same_data, preflight, select
from seqtrack_mlflow.evaluation.metrics import sequence_curves, summarize
from seqtrack_mlflow.evaluation.plots import plot_precision, plot_success
from seqtrack_mlflow.evaluation.tracker import SeqTrackTracker, track_sequences
from seqtrack_mlflow.model.official import OfficialCheckpointError, is_official_checkpoint, read_official
from seqtrack_mlflow.model.precision import check_precision
from seqtrack_mlflow.steps.select_data import log_selection, selection_from_run
from seqtrack_mlflow.tracking import RunLogger, git_commit, resolve_checkpoint, resolve_data_run, run_context
from seqtrack_mlflow.train import checkpoints
from seqtrack_mlflow.train.distributed import pick_device


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


@dataclass(frozen=True)
class TrainedWeights:
    """What evaluation needs from a checkpoint: our training checkpoints and official release files."""

    model: ModelConfig
    state_dict: dict[str, Any]
    preset: str
    seed: int
    epoch: int | None
    data: DataConfig  # the training run's data settings (defaults for an official file)
    dataset_info: dict[str, Any]
    train_run_id: str
    official: bool = False


def load_trained_weights(path: Path, preset: str | None) -> TrainedWeights:
    """Our `epoch_N.ckpt` (read by `train.checkpoints`) or an official SeqTrack file (read without
    running any of its code, the preset inferred from the shapes unless given)."""
    if is_official_checkpoint(path):
        try:
            weights = read_official(path, preset)
        except OfficialCheckpointError as exc:
            raise ConfigError(str(exc)) from None
        return TrainedWeights(
            weights.config, weights.state_dict, weights.preset, 0, weights.epoch, DataConfig(), {}, "", True
        )
    ckpt = checkpoints.load(path)
    if preset is not None and preset != ckpt.settings.preset:
        raise ConfigError(
            f"preset={preset} but {path} was trained with preset {ckpt.settings.preset}: drop -P preset"
        )
    return TrainedWeights(
        ckpt.settings.model,
        ckpt.model_state_dict,
        ckpt.settings.preset,
        ckpt.settings.train.seed,
        ckpt.epoch,
        ckpt.settings.data,
        ckpt.dataset_info,
        ckpt.mlflow_run_id,
    )


def evaluation_data(trained: TrainedWeights, given: dict[str, Any]) -> DataConfig:
    """The training run's data source and its resolved classes, with the data settings the user gave."""
    info = trained.dataset_info
    # The classes and source the training run resolved ("random" and "auto" were decided there).
    base = dataclasses.replace(
        trained.data,
        classes=",".join(info.get("classes", [])) or trained.data.classes,
        source=info.get("source", trained.data.source),
    )
    return dataclasses.replace(base, **given)


def run_evaluate(
    checkpoint: str,
    tracker_cfg: TrackerConfig,
    *,
    data_override: dict[str, Any] | None = None,
    data_run: str | None = None,
    preset: str | None = None,
    device: str = "auto",
    output_dir: Path = Path("outputs"),
    nested: bool = False,
) -> EvalResult:
    """`data_override`: data settings the user gave (unset ones are the training run's); `data_run`: a
    select_data run whose index to evaluate on instead; `preset`: for an official file whose shapes
    should be checked against a named preset (inferred when unset)."""
    validate_tracker(tracker_cfg)
    if not checkpoint:
        raise ConfigError(
            "evaluate needs a checkpoint: pass -P checkpoint=<train run id | runs:/ URI | file>"
        )
    given = data_override or {}
    torch_device = pick_device(device)
    check_precision(tracker_cfg.eval_precision, torch_device)  # one line, before a run starts
    path, ckpt_run = resolve_checkpoint(checkpoint, output_dir / "downloads")
    trained = load_trained_weights(path, preset)
    data = evaluation_data(trained, given)
    if data_run:
        resolve_data_run(data_run)  # before a run starts: a missing store or run is one line
    else:
        preflight(data)
    with run_context("evaluate", nested=nested, system_metrics=False) as logger:
        out_dir = output_dir / (logger.run_id or "offline")
        if data_run:
            selection = selection_from_run(data_run, out_dir)
            check_same_data(selection, given)
        else:
            selection = select(data, trained.seed, out_dir)
        split = tracker_cfg.split
        sequences = selection.sequences(None if split == "all" else split)
        if not sequences:
            raise ConfigError(
                f"no {split} sequences for classes {selection.classes}: choose -P split or -P classes"
            )
        logger.log_params(
            {
                "checkpoint": checkpoint,
                "data": data_run,
                "device": device,
                "output_dir": str(output_dir),
                "seed": trained.seed,
                "preset": trained.preset,
                "patch_size": trained.model.patch_size,
                **dataclasses.asdict(tracker_cfg),
            }
        )
        logger.set_tags(
            {
                "seqtrack.train_run_id": ckpt_run or trained.train_run_id,
                "seqtrack.checkpoint_epoch": trained.epoch if trained.epoch is not None else "",
                "seqtrack.checkpoint_kind": "official" if trained.official else "seqtrack-mlflow",
                "seqtrack.device": str(torch_device),
                "seqtrack.git_commit": git_commit(),
            }
        )
        log_selection(selection, logger, out_dir, context="evaluation", save_index=False)
        tracker = SeqTrackTracker.from_weights(trained.model, trained.state_dict, tracker_cfg, torch_device)
        metrics, rows, curves = _track_all(tracker, sequences, tracker_cfg, out_dir)
        _publish(logger, metrics, rows, curves, out_dir, path.name, selection.label)
        logger.describe(
            f"Tracked {len(rows)} {split} sequences of {' + '.join(selection.classes)} ({selection.label}) "
            f"with {path.name}: AUC {metrics['auc']:.1f}, P {metrics['precision']:.1f}, "
            f"P_norm {metrics['norm_precision']:.1f}"
        )
        return EvalResult(logger.run_id, metrics, rows, out_dir)


def _track_all(
    tracker: SeqTrackTracker, sequences: list, cfg: TrackerConfig, out_dir: Path
) -> tuple[dict[str, float], list[dict[str, Any]], dict[str, list[dict]]]:
    rows: list[dict[str, Any]] = []
    by_class: dict[str, list[dict]] = {}
    baseline: list[dict] = []
    frames = seconds = 0.0
    # Up to eval_batch sequences in lockstep; a row's fps is its frames over its share of the batched
    # steps' time, so the overall fps below is all tracked frames over the total tracking time.
    tracked = track_sequences(tracker, sequences, cfg.max_frames or 0, cfg.eval_batch)
    for seq, (boxes, fps) in zip(sequences, tracked, strict=True):
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
    dataset: str,
) -> None:
    table = out_dir / "per_sequence.csv"
    with table.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summaries = {name: summarize(cs) for name, cs in curves.items()}
    success = plot_success(summaries, out_dir / "success_plot.png", dataset)
    precision = plot_precision(summaries, out_dir / "precision_plot.png", dataset)
    print(
        f"{dataset}, {checkpoint_name}: AUC {metrics['auc']:.2f}  P {metrics['precision']:.2f}  "
        f"P_norm {metrics['norm_precision']:.2f}  ({metrics['fps']:.1f} FPS, {len(rows)} sequences)"
    )
    logger.log_metrics(metrics)
    logger.log_artifacts(out_dir / "results", "results")
    for path in (table, success, precision):
        logger.log_artifact(path)
