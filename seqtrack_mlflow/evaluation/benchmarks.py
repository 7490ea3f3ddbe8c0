"""The benchmarks evaluate can run besides LaSOT (`-P benchmark=`): which dataset split each tracks, how
it is scored, and the result files each needs.

- `lasot_ext`: the LaSOT extension's 150 sequences, LaSOT's protocol (`results.score_sequences`).
- `got10k_val`: GOT-10k's 180 val sequences, AO / SR0.5 / SR0.75 as the GOT-10k toolkit computes them
  (`got10k_metrics.py`); results in the toolkit's layout, `results/<seq>/<seq>_001.txt` (one x,y,w,h
  line a frame, the toolkit's `%.3f`) and `<seq>_time.txt`.
- `got10k_test`, `trackingnet_test`: the ground truth is hidden; the files each server takes, zipped
  as the official conversion scripts zip them (`lib/test/utils/transform_got10k.py`,
  `transform_trackingnet.py`): integer x,y,w,h (`%d`, as the official result files), GOT-10k as
  `<seq>/<seq>_001.txt` + `<seq>/<seq>_time.txt`, TrackingNet as one flat `<video>.txt` a video.

Per-frame times: the tracker measures each sequence's rate, so `<seq>_time.txt` holds that sequence's
mean time per frame on every line.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from seqtrack_mlflow.config import DataConfig
from seqtrack_mlflow.datasets import got10k, registry
from seqtrack_mlflow.datasets.base import Sequence, frame_size
from seqtrack_mlflow.datasets.local import SplitRead
from seqtrack_mlflow.evaluation import got10k_metrics
from seqtrack_mlflow.evaluation.results import overall_fps

GOT10K_SERVER = "http://got-10k.aitestunion.com/submit_instructions"
TRACKINGNET_SERVER = "the TrackingNet evaluation server linked from https://tracking-net.org (test set)"


@dataclass(frozen=True)
class Benchmark:
    """One `-P benchmark=` value other than `lasot`."""

    name: str
    dataset: str  # the registry entry read
    split: str
    label: str
    scoring: str  # "lasot" (LaSOT protocol), "got10k" (AO, SR) or "server" (hidden ground truth)
    server: str = ""  # where a "server" benchmark's zip goes


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("lasot_ext", "lasot_ext", "test", "LaSOT_ext", "lasot"),
        Benchmark("got10k_val", "got10k", "val", "GOT-10k val", "got10k"),
        Benchmark("got10k_test", "got10k", "test", "GOT-10k test", "server", GOT10K_SERVER),
        Benchmark(
            "trackingnet_test", "trackingnet", "test", "TrackingNet test", "server", TRACKINGNET_SERVER
        ),
    )
}


def check(bench: Benchmark, data: DataConfig) -> None:
    """Refuse a missing root before a run starts (one line naming the setting and the variable)."""
    registry.get(bench.dataset).check(data, "local")


def used_settings(bench: Benchmark, data: DataConfig) -> dict[str, str]:
    """The benchmark's root setting, resolved to the folder read."""
    return registry.get(bench.dataset).used_settings(data, "local")


def read(bench: Benchmark, data: DataConfig) -> SplitRead:
    """The benchmark's sequences on disk (a partial download is read as it is and says so)."""
    entry = registry.get(bench.dataset)
    return entry.read_split(entry.root(data), bench.split, data)


def bound(seq: Sequence) -> tuple[int, int]:
    """The frame size boxes are clipped to: meta_info.ini's `resolution`, else the first frame's."""
    return got10k.resolution(got10k.read_meta(seq.path)) or frame_size(seq)


def write_toolkit_results(seq: Sequence, boxes: np.ndarray, fps: float, folder: Path, fmt: str) -> Path:
    """`<folder>/<seq>/<seq>_001.txt` and `<seq>_time.txt` (the GOT-10k toolkit's record layout)."""
    seq_dir = folder / seq.name
    seq_dir.mkdir(parents=True, exist_ok=True)
    np.savetxt(seq_dir / f"{seq.name}_001.txt", boxes, fmt=fmt, delimiter=",")
    seconds = 1.0 / fps if fps > 0 else 0.0
    np.savetxt(seq_dir / f"{seq.name}_time.txt", np.full(len(boxes), seconds), fmt="%.8f")
    return seq_dir


def score_got10k(
    sequences: Seq[Sequence], tracked: Seq[tuple[np.ndarray, float]], out_dir: Path
) -> tuple[dict[str, float], list[dict[str, Any]], np.ndarray]:
    """Toolkit-layout result files, per-sequence rows and the overall metrics (in percent) of GOT-10k val;
    also the success curve (fractions, 101 thresholds)."""
    ious, rows = [], []
    for seq, (boxes, fps) in zip(sequences, tracked, strict=True):
        n = len(boxes)
        write_toolkit_results(seq, boxes, fps, out_dir / "results", "%.3f")
        cover = ~seq.out_of_view[:n]  # cover > 0 (the reader's out_of_view is cover == 0)
        seq_ious = got10k_metrics.sequence_ious(boxes, seq.boxes[:n], cover, bound(seq))
        ious.append(seq_ious)
        one = got10k_metrics.summarize([seq_ious]) if seq_ious.size else {"ao": 0.0, "sr50": 0.0, "sr75": 0.0}
        rows.append(
            {
                "sequence": seq.name,
                "class": seq.class_name,
                "frames": n,
                **{k: 100.0 * float(one[k]) for k in ("ao", "sr50", "sr75")},
                "fps": fps,
            }
        )
    overall = got10k_metrics.summarize(ious)
    metrics = {k: 100.0 * float(overall[k]) for k in ("ao", "sr50", "sr75")}
    metrics["fps"] = overall_fps(tracked)
    return metrics, rows, np.asarray(overall["success_curve"])


def plot_got10k(curve: np.ndarray, ao: float, path: Path, label: str) -> Path:
    """The toolkit's success plot: success rate over 101 overlap thresholds, AO in the legend."""
    fig = Figure(figsize=(6.0, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(got10k_metrics.THRESHOLDS, curve * 100.0, linewidth=2, label=f"SeqTrack [AO {ao:.1f}]")
    ax.set(xlim=(0, 1), ylim=(0, 101), xlabel="Overlap threshold", ylabel="Success rate (%)")
    ax.set_title(f"Success plot on {label}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def write_rows(rows: list[dict[str, Any]], path: Path) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_submission(
    bench: Benchmark, sequences: Seq[Sequence], tracked: Seq[tuple[np.ndarray, float]], out_dir: Path
) -> Path:
    """The server's files under `<out_dir>/submission/` and the zip it takes, `<out_dir>/<name>.zip`."""
    folder = out_dir / "submission"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for seq, (boxes, fps) in zip(sequences, tracked, strict=True):
        if bench.dataset == "got10k":
            write_toolkit_results(seq, boxes, fps, folder, "%d")
        else:
            np.savetxt(folder / f"{seq.name}.txt", boxes, fmt="%d", delimiter=",")
    return Path(shutil.make_archive(str(out_dir / f"{bench.name}_submission"), "zip", folder))


__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "bound",
    "check",
    "plot_got10k",
    "read",
    "used_settings",
    "score_got10k",
    "write_rows",
    "write_submission",
    "write_toolkit_results",
]
