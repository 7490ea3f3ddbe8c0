"""The evaluate step: a checkpoint -> SeqTrack tracker on the selected classes' test split -> LaSOT
metrics (overall and per class), result files, a per-sequence table and plots, logged to MLflow."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqtrack_mlflow.config import ConfigError, DataConfig, TrackerConfig
from seqtrack_mlflow.datasets.base import Sequence
from seqtrack_mlflow.datasets.index import index_from_columns
from seqtrack_mlflow.datasets.mix import index_columns
from seqtrack_mlflow.datasets.selection import Selection, check_same_data, preflight, select
from seqtrack_mlflow.evaluation import benchmarks
from seqtrack_mlflow.evaluation.baseline_scores import baselines_line, with_baselines
from seqtrack_mlflow.evaluation.baselines import baseline_names, resolve_baselines
from seqtrack_mlflow.evaluation.result_videos import write_result_videos
from seqtrack_mlflow.evaluation.results import Scores, headline, score_sequences, write_report
from seqtrack_mlflow.evaluation.runners import check_backend
from seqtrack_mlflow.evaluation.tracker import SeqTrackTracker, track_sequences
from seqtrack_mlflow.model.factory import TrainedWeights, load_trained_weights
from seqtrack_mlflow.model.references import resolve_checkpoint, resolved_reference
from seqtrack_mlflow.steps.lineage import checkpoint_tags, log_selection, selection_from_run
from seqtrack_mlflow.tracking import RunLogger, resolve_data_run, run_context
from seqtrack_mlflow.train.distributed import pick_device


@dataclass(frozen=True)
class EvalResult:
    run_id: str | None
    metrics: dict[str, float]
    per_sequence: list[dict[str, Any]]
    out_dir: Path


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
    tracker_cfg.validate()
    tracker_cfg = tracker_cfg.resolved()  # an unset update interval: the benchmark's official one
    if not checkpoint:
        raise ConfigError(
            "evaluate needs a checkpoint: pass -P checkpoint="
            "<train run id | runs:/ URI | models:/<name>/<version> | file>"
        )
    given = data_override or {}
    torch_device = pick_device(device)
    check_backend(tracker_cfg, torch_device)  # one line, before a run starts
    if tracker_cfg.baselines is not None:  # given: refused (no OpenCV, a benchmark) before the download
        tracker_cfg = resolve_baselines(tracker_cfg, "")
    path, ckpt_run = resolve_checkpoint(checkpoint, output_dir / "downloads")
    trained = load_trained_weights(path, preset)
    data = evaluation_data(trained, given)
    tracker_cfg = resolve_baselines(tracker_cfg, data.source)  # unset: on for the demo's synthetic data
    bench = benchmarks.BENCHMARKS.get(tracker_cfg.benchmark)
    if bench is not None:
        return _run_benchmark(
            bench, checkpoint, path, ckpt_run, trained, tracker_cfg, data, device, output_dir, nested
        )
    data = dataclasses.replace(data, datasets="lasot", dataset_ratios=None)  # LaSOT's classes alone
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
            # Log the class spec as given (here or to the training run), as a select_data run would:
            # the classes it drew are `selected_classes`.
            spec = given.get("classes", trained.data.classes)
            selection = dataclasses.replace(selection, data=dataclasses.replace(selection.data, classes=spec))
        sequences = _split(selection, tracker_cfg.split)
        params = {"checkpoint": checkpoint, "data": data_run, "device": device, "output_dir": str(output_dir)}
        _log_inputs(logger, params, path, trained, tracker_cfg, ckpt_run, torch_device)
        log_selection(selection, logger, out_dir, context="evaluation", save_index=False)
        tracker = SeqTrackTracker.from_weights(trained.model, trained.state_dict, tracker_cfg, torch_device)
        scores = _score(tracker, sequences, tracker_cfg, out_dir)
        _log_scores(logger, scores, out_dir, selection, tracker_cfg, path.name)
        if write_result_videos(sequences, out_dir / "results", out_dir / "videos", tracker_cfg.eval_videos):
            logger.log_artifacts(out_dir / "videos", "videos")
        return EvalResult(logger.run_id, scores.metrics, scores.rows, out_dir)


def _run_benchmark(
    bench: benchmarks.Benchmark,
    checkpoint: str,
    path: Path,
    ckpt_run: str | None,
    trained: TrainedWeights,
    tracker_cfg: TrackerConfig,
    data: DataConfig,
    device: str,
    output_dir: Path,
    nested: bool,
) -> EvalResult:
    """`-P benchmark=` got10k_val, got10k_test, trackingnet_test or lasot_ext: that dataset split,
    tracked whole, scored (or written for its server), logged."""
    benchmarks.check(bench, data)
    if bench.scoring == "server" and tracker_cfg.max_frames:
        raise ConfigError(
            f"benchmark={bench.name} sends every frame to its server: drop "
            f"-P max_frames={tracker_cfg.max_frames}"
        )
    torch_device = pick_device(device)
    with run_context("evaluate", nested=nested, system_metrics=False) as logger:
        out_dir = output_dir / (logger.run_id or "offline")
        out_dir.mkdir(parents=True, exist_ok=True)
        found = benchmarks.read(bench, data)
        print(found.line(), flush=True)
        sequences = list(found.sequences)
        params = {"checkpoint": checkpoint, "data": None, "device": device, "output_dir": str(output_dir)}
        _log_inputs(logger, params, path, trained, tracker_cfg, ckpt_run, torch_device)
        logger.log_params({**dataclasses.asdict(data), **benchmarks.used_settings(bench, data)})
        index = index_from_columns(index_columns(sequences))
        logger.log_dataset(index, f"{bench.dataset}-{bench.split}", "evaluation")
        tracker = SeqTrackTracker.from_weights(trained.model, trained.state_dict, tracker_cfg, torch_device)
        if bench.scoring == "lasot":
            scores = _score(tracker, sequences, tracker_cfg, out_dir)
            _report(
                logger, scores.metrics, out_dir, write_report(scores, out_dir, bench.label), bench, path.name
            )
            _print_baselines(scores, tracker_cfg)
            return EvalResult(logger.run_id, scores.metrics, scores.rows, out_dir)
        tracked = track_sequences(tracker, sequences, tracker_cfg.max_frames or 0, tracker_cfg.eval_batch)
        if bench.scoring == "got10k":
            metrics, rows, curve = benchmarks.score_got10k(sequences, tracked, out_dir)
            report = [
                benchmarks.write_rows(rows, out_dir / "per_sequence.csv"),
                benchmarks.plot_got10k(curve, metrics["ao"], out_dir / "success_plot.png", bench.label),
            ]
            _report(logger, metrics, out_dir, report, bench, path.name)
            return EvalResult(logger.run_id, metrics, rows, out_dir)
        archive = benchmarks.write_submission(bench, sequences, tracked, out_dir)
        rows = [
            {"sequence": s.name, "frames": len(b), "fps": fps}
            for s, (b, fps) in zip(sequences, tracked, strict=True)
        ]
        logger.log_artifact(benchmarks.write_rows(rows, out_dir / "per_sequence.csv"))
        logger.log_artifact(archive)
        line = f"{bench.label}: {len(rows)} sequences tracked; upload {archive} to {bench.server}"
        print(line)
        logger.describe(f"{line} (ground truth hidden: the server scores it)")
        return EvalResult(logger.run_id, {}, rows, out_dir)


def _report(
    logger: RunLogger,
    metrics: dict[str, float],
    out_dir: Path,
    report: list[Path],
    bench: benchmarks.Benchmark,
    checkpoint_name: str,
) -> None:
    """A scored benchmark's metrics, result files, table and plots; its console line and description."""
    logger.log_metrics(metrics)
    logger.log_artifacts(out_dir / "results", "results")
    for artifact in report:
        logger.log_artifact(artifact)
    shown = "  ".join(
        f"{k} {v:.2f}"
        for k, v in metrics.items()
        if k in ("auc", "precision", "norm_precision", "ao", "sr50", "sr75")
    )
    line = f"{bench.label}, {checkpoint_name}: {shown}  ({metrics.get('fps', 0.0):.1f} FPS)"
    print(line)
    logger.describe(line)


def _score(
    tracker: SeqTrackTracker, sequences: list[Sequence], tracker_cfg: TrackerConfig, out_dir: Path
) -> Scores:
    """The model's scores on `sequences`, with the classical baselines' on the same frames."""
    scores = score_sequences(tracker, sequences, tracker_cfg, out_dir)
    return with_baselines(scores, sequences, baseline_names(tracker_cfg))


def _print_baselines(scores: Scores, tracker_cfg: TrackerConfig) -> None:
    if names := baseline_names(tracker_cfg):
        print(baselines_line(scores.metrics, names))


def _split(selection: Selection, split: str) -> list[Sequence]:
    sequences = selection.sequences(None if split == "all" else split)
    if not sequences:
        raise ConfigError(
            f"no {split} sequences for classes {selection.classes}: choose -P split or -P classes"
        )
    return sequences


def _log_inputs(
    logger: RunLogger,
    params: dict[str, Any],
    path: Path,
    trained: TrainedWeights,
    tracker_cfg: TrackerConfig,
    ckpt_run: str | None,
    device: torch.device,
) -> None:
    """`checkpoint` as given, and `checkpoint_uri`: the one form of what it resolved to (`path`)."""
    logger.log_params(
        {
            **params,
            "checkpoint_uri": resolved_reference(params["checkpoint"], path, ckpt_run),
            "seed": trained.seed,
            "preset": trained.preset,
            "patch_size": trained.model.patch_size,
            **dataclasses.asdict(tracker_cfg),
        }
    )
    logger.set_tags(checkpoint_tags(trained, ckpt_run, device))


def _log_scores(
    logger: RunLogger,
    scores: Scores,
    out_dir: Path,
    selection: Selection,
    tracker_cfg: TrackerConfig,
    checkpoint_name: str,
) -> None:
    """Metrics, result files, table and plots; the console line and the run's description."""
    report = write_report(scores, out_dir, selection.label)
    print(headline(scores, selection.label, checkpoint_name))
    _print_baselines(scores, tracker_cfg)
    logger.log_metrics(scores.metrics)
    logger.log_artifacts(out_dir / "results", "results")
    for artifact in report:
        logger.log_artifact(artifact)
    m, classes = scores.metrics, " + ".join(selection.classes)
    logger.describe(
        f"Tracked {len(scores.rows)} {tracker_cfg.split} sequences of {classes} ({selection.label}) with "
        f"{checkpoint_name}: AUC {m['auc']:.1f}, P {m['precision']:.1f}, P_norm {m['norm_precision']:.1f}"
        + "".join(f"; {n.upper()} AUC {m[f'baseline.{n}.auc']:.1f}" for n in baseline_names(tracker_cfg))
    )
