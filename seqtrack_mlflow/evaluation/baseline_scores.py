"""The classical baselines scored beside the model: the same sequences, the same frames (max_frames
included), the same first box and the same LaSOT metrics, added to the model's `Scores` as metrics
`baseline.<name>.<metric>`, a per-sequence column `<name>_auc` and curves on the same plots.

The tracking itself runs in a process pool (`baseline_pool.py`)."""

from __future__ import annotations

import dataclasses

from seqtrack_mlflow.datasets.base import Sequence
from seqtrack_mlflow.evaluation.baseline_pool import track_baselines
from seqtrack_mlflow.evaluation.metrics import sequence_curves, summarize
from seqtrack_mlflow.evaluation.results import HEADLINE, Scores


def with_baselines(scores: Scores, sequences: list[Sequence], names: tuple[str, ...]) -> Scores:
    """`scores` (the model's on `sequences`) with the baselines `names` tracked and scored on the frames
    the model tracked: each row's `frames` from frame 1's ground-truth box."""
    if not names:
        return scores
    curves: dict[str, list[dict]] = {name: [] for name in names}
    rows = []
    tracked_all = track_baselines(names, sequences, [row["frames"] for row in scores.rows])
    for seq, row, tracked in zip(sequences, scores.rows, tracked_all, strict=True):
        n = row["frames"]
        row = dict(row)
        for name, boxes in tracked.items():
            curve = sequence_curves(boxes, seq.boxes[:n], seq.visible[:n])
            curves[name].append(curve)
            row[f"{name}_auc"] = float(summarize([curve])["auc"])
        rows.append(row)
    metrics = dict(scores.metrics)
    for name, cs in curves.items():
        overall = summarize(cs)
        metrics.update({f"baseline.{name}.{k}": float(overall[k]) for k in HEADLINE})
    references = {**scores.references, **{name.upper(): cs for name, cs in curves.items()}}
    return dataclasses.replace(scores, metrics=metrics, rows=rows, references=references)


def baselines_line(metrics: dict[str, float], names: tuple[str, ...]) -> str:
    """The one console line comparing the model's AUC with the baselines' (and keeping the first box)."""
    theirs = "  ".join(f"{name.upper()} {metrics[f'baseline.{name}.auc']:.2f}" for name in names)
    return (
        f"AUC: SeqTrack {metrics['auc']:.2f} | OpenCV baselines {theirs} | first box "
        f"{metrics['first_box_auc']:.2f}  (same frames, same first box)"
    )
