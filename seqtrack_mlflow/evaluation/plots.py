"""Success and precision plots in the style of the LaSOT toolkit, written to PNG.

Uses `matplotlib.figure.Figure` directly (Agg canvas, no pyplot): no global backend switch, no GUI,
safe in worker threads and inside MLflow runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from seqtrack_mlflow.evaluation.metrics import (
    CENTER_THRESHOLDS,
    NORM_THRESHOLDS,
    OVERLAP_THRESHOLDS,
    summarize,
)


def _as_summary(curves: Mapping) -> Mapping:
    """Accept either a `summarize` result or one sequence's `sequence_curves` result."""
    if "success_curve" in curves:
        return curves
    return summarize([curves])


def _plot(
    curves_by_name: Mapping[str, Mapping],
    path: str | Path,
    *,
    x: np.ndarray,
    curve_key: str,
    score_key: str,
    score_label: str,
    xlabel: str,
    ylabel: str,
    title: str,
) -> Path:
    summaries = {name: _as_summary(c) for name, c in curves_by_name.items()}
    # Toolkit convention: legend ordered best first, score in brackets.
    ranked = sorted(summaries.items(), key=lambda kv: -kv[1][score_key])
    fig = Figure(figsize=(6.0, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, summary in ranked:
        label = f"{name} [{score_label} {summary[score_key]:.1f}]"
        ax.plot(x, np.asarray(summary[curve_key]) * 100.0, linewidth=2, label=label)
    ax.set_xlim(float(x[0]), float(x[-1]))
    ax.set_ylim(0, 101)  # keep curves at 100 % visible above the frame
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if ranked:
        ax.legend(loc="lower left" if curve_key == "success_curve" else "lower right", fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def plot_success(curves_by_name: Mapping[str, Mapping], path: str | Path, dataset: str = "LaSOT") -> Path:
    """Overlap threshold vs success rate (%), legend with AUC."""
    return _plot(
        curves_by_name,
        path,
        x=OVERLAP_THRESHOLDS,
        curve_key="success_curve",
        score_key="auc",
        score_label="AUC",
        xlabel="Overlap threshold",
        ylabel="Success rate (%)",
        title=f"Success plot of OPE on {dataset}",
    )


def plot_precision(curves_by_name: Mapping[str, Mapping], path: str | Path, dataset: str = "LaSOT") -> Path:
    """Location error threshold (px) vs precision (%), legend with P@20."""
    return _plot(
        curves_by_name,
        path,
        x=CENTER_THRESHOLDS,
        curve_key="precision_curve",
        score_key="precision",
        score_label="P@20",
        xlabel="Location error threshold (pixels)",
        ylabel="Precision (%)",
        title=f"Precision plot of OPE on {dataset}",
    )


def plot_norm_precision(
    curves_by_name: Mapping[str, Mapping], path: str | Path, dataset: str = "LaSOT"
) -> Path:
    """Normalised location error threshold vs precision (%), legend with P_norm@0.2."""
    return _plot(
        curves_by_name,
        path,
        x=NORM_THRESHOLDS,
        curve_key="norm_precision_curve",
        score_key="norm_precision",
        score_label="P_norm@0.2",
        xlabel="Normalized location error threshold",
        ylabel="Normalized precision (%)",
        title=f"Normalized precision plot of OPE on {dataset}",
    )


__all__ = ["plot_norm_precision", "plot_precision", "plot_success"]
