"""Files a train run leaves besides checkpoints: loss/IoU curves and the exact environment."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from pathlib import Path

from matplotlib.figure import Figure


def environment_requirements() -> str:
    """`name==version` for every distribution in the running interpreter (pip-installable pins)."""
    pins = sorted(
        {
            f"{d.metadata['Name']}=={d.version}"
            for d in importlib.metadata.distributions()
            if d.metadata["Name"]
        },
        key=str.lower,
    )
    header = (
        f"# exported with exact versions from {sys.executable} "
        f"(Python {platform.python_version()}, {platform.platform()})\n"
    )
    return header + "\n".join(pins) + "\n"


def curve_titles(dataset: str) -> tuple[str, str]:
    """The two panels' titles, naming the data (`synthetic ...` for the demo's: no plot passes for real)."""
    return f"training loss on {dataset}", f"training IoU (argmax tokens) on {dataset}"


def plot_training_curves(
    steps: list[int], loss: list[float], iou: list[float], path: Path, dataset: str
) -> Path:
    """Loss and IoU against samples seen, one PNG with two panels; `dataset`: the selection's label."""
    loss_title, iou_title = curve_titles(dataset)
    fig = Figure(figsize=(11, 4), dpi=100)
    ax_loss, ax_iou = fig.subplots(1, 2)
    ax_loss.plot(steps, loss, color="tab:red")
    ax_loss.set(xlabel="samples seen", ylabel="loss", title=loss_title)
    ax_iou.plot(steps, iou, color="tab:blue")
    ax_iou.set(xlabel="samples seen", ylabel="IoU", title=iou_title, ylim=(0, 1))
    for ax in (ax_loss, ax_iou):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return path
