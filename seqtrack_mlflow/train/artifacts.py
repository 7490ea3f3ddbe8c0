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


def plot_training_curves(steps: list[int], loss: list[float], iou: list[float], path: Path) -> Path:
    """Loss and IoU against samples seen, one PNG with two panels."""
    fig = Figure(figsize=(10, 4), dpi=100)
    ax_loss, ax_iou = fig.subplots(1, 2)
    ax_loss.plot(steps, loss, color="tab:red")
    ax_loss.set(xlabel="samples seen", ylabel="loss", title="training loss")
    ax_iou.plot(steps, iou, color="tab:blue")
    ax_iou.set(xlabel="samples seen", ylabel="IoU", title="training IoU (argmax tokens)", ylim=(0, 1))
    for ax in (ax_loss, ax_iou):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return path
