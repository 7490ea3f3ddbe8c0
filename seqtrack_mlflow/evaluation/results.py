"""Scoring a tracker on a set of sequences: result files, per-sequence rows, overall and per-class
metrics (with the keep-the-first-box reference), the per-sequence table and the plots. No MLflow: the
evaluate step logs what this returns."""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqtrack_mlflow.config import TrackerConfig
from seqtrack_mlflow.evaluation.metrics import sequence_curves, summarize
from seqtrack_mlflow.evaluation.plots import plot_norm_precision, plot_precision, plot_success
from seqtrack_mlflow.evaluation.tracker import SeqTrackTracker, track_sequences

HEADLINE = ("auc", "precision", "norm_precision")


@dataclass(frozen=True)
class Scores:
    metrics: dict[str, float]  # overall, first_box_*, per class (`auc_<class>`), fps
    rows: list[dict[str, Any]]  # one per sequence
    curves: dict[str, list[dict]]  # "all" and, with several classes, each class: per-sequence curves
    # Reference trackers on the same frames ("first box" and the classical baselines): per-sequence curves
    references: dict[str, list[dict]] = dataclasses.field(default_factory=dict)


def write_result_file(boxes: np.ndarray, path: Path) -> Path:
    """LaSOT result format: one `x,y,w,h` line per frame, frame 1 included."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, boxes, fmt="%.2f", delimiter=",")
    return path


def overall_fps(tracked: Seq[tuple[np.ndarray, float]]) -> float:
    """All tracked frames (the first of each sequence is given, not tracked) over the total tracking
    time: each sequence's fps is its frames over its share of the time."""
    frames = sum(len(boxes) - 1 for boxes, fps in tracked if fps > 0)
    seconds = sum((len(boxes) - 1) / fps for boxes, fps in tracked if fps > 0)
    return frames / seconds if seconds > 0 else 0.0


def score_sequences(tracker: SeqTrackTracker, sequences: list, cfg: TrackerConfig, out_dir: Path) -> Scores:
    """Track `sequences` (up to eval_batch in lockstep), write `results/<seq>.txt`, and score them."""
    rows: list[dict[str, Any]] = []
    by_class: dict[str, list[dict]] = {}
    baseline: list[dict] = []
    # A row's fps is its frames over its share of the batched steps' time, so the overall fps below is
    # all tracked frames over the total tracking time.
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
                **{k: one[k] for k in HEADLINE},
                "fps": fps,
            }
        )
    all_curves = [c for cs in by_class.values() for c in cs]
    overall = summarize(all_curves)
    metrics = {k: float(overall[k]) for k in HEADLINE}
    metrics["fps"] = overall_fps(tracked)
    first_box = summarize(baseline)
    metrics.update({f"first_box_{k}": float(first_box[k]) for k in HEADLINE})
    for cls, cs in by_class.items():
        s = summarize(cs)
        metrics.update({f"{k}_{cls}": float(s[k]) for k in HEADLINE})
    groups = {"all": all_curves, **by_class} if len(by_class) > 1 else {"all": all_curves}
    return Scores(metrics, rows, groups, {"first box": baseline})


def plotted_curves(scores: Scores) -> dict[str, dict]:
    """Legend name -> summary of every curve the plots draw: the model's (overall, and per class with
    several), then the references it is compared with on the same frames."""
    ours = {"SeqTrack" if name == "all" else f"SeqTrack {name}": cs for name, cs in scores.curves.items()}
    return {name: summarize(cs) for name, cs in {**ours, **scores.references}.items()}


def write_report(scores: Scores, out_dir: Path, dataset: str) -> list[Path]:
    """`per_sequence.csv`, `success_plot.png`, `precision_plot.png` and `norm_precision_plot.png` in
    `out_dir`."""
    table = out_dir / "per_sequence.csv"
    with table.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(scores.rows[0]))
        writer.writeheader()
        writer.writerows(scores.rows)
    summaries = plotted_curves(scores)
    success = plot_success(summaries, out_dir / "success_plot.png", dataset)
    precision = plot_precision(summaries, out_dir / "precision_plot.png", dataset)
    norm = plot_norm_precision(summaries, out_dir / "norm_precision_plot.png", dataset)
    return [table, success, precision, norm]


def headline(scores: Scores, dataset: str, checkpoint_name: str) -> str:
    """The one console line of an evaluation."""
    m = scores.metrics
    return (
        f"{dataset}, {checkpoint_name}: AUC {m['auc']:.2f}  P {m['precision']:.2f}  "
        f"P_norm {m['norm_precision']:.2f}  ({m['fps']:.1f} FPS, {len(scores.rows)} sequences)"
    )
