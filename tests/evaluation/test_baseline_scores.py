"""The classical baselines scored beside the model: on the frames the model tracked (max_frames
included) from the same first box, as metrics, a table column, curves on the plots and one console line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seqtrack_mlflow.datasets.base import FrameError, Sequence
from seqtrack_mlflow.evaluation.baseline_pool import track_baselines
from seqtrack_mlflow.evaluation.baseline_scores import baselines_line, with_baselines
from seqtrack_mlflow.evaluation.baselines import track_frames
from seqtrack_mlflow.evaluation.metrics import sequence_curves, summarize
from seqtrack_mlflow.evaluation.results import HEADLINE, Scores, plotted_curves, write_report

FRAMES, TRACKED = 12, 8  # the model tracked 8 of 12 frames (max_frames=8)


def _sequence(root: Path) -> tuple[Sequence, list[np.ndarray]]:
    """A red square moving over a fixed noise background, written as PNG frames in LaSOT's layout."""
    rng = np.random.default_rng(0)
    background = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    frames, boxes = [], []
    (root / "img").mkdir(parents=True)
    for t in range(FRAMES):
        frame = background.copy()
        frame[40 + t : 70 + t, 50 + 2 * t : 80 + 2 * t] = [255, 0, 0]
        Image.fromarray(frame).save(root / "img" / f"{t + 1:08d}.png")
        frames.append(frame)
        boxes.append([50 + 2 * t, 40 + t, 30, 30])
    hidden = np.zeros(FRAMES, dtype=bool)
    seq = Sequence(
        "square-1", "square", 1, root, "test", np.asarray(boxes, float), hidden, hidden, "img/{:08d}.png"
    )
    return seq, frames


def _first_box_scores(seq: Sequence) -> Scores:
    """The scores of the keep-the-first-box tracker on the first TRACKED frames, in evaluate's shape."""
    boxes = np.repeat(seq.boxes[:1], TRACKED, axis=0)
    curve = sequence_curves(boxes, seq.boxes[:TRACKED], seq.visible[:TRACKED])
    one = summarize([curve])
    metrics = {k: float(one[k]) for k in HEADLINE} | {f"first_box_{k}": float(one[k]) for k in HEADLINE}
    row = {"sequence": seq.name, "class": seq.class_name, "frames": TRACKED, **{k: one[k] for k in HEADLINE}}
    return Scores(metrics, [row], {"all": [curve]}, {"first box": [curve]})


@pytest.fixture
def scored(tmp_path: Path) -> tuple[Scores, Scores, list[np.ndarray], Sequence]:
    seq, frames = _sequence(tmp_path / "square-1")
    model = _first_box_scores(seq)
    return model, with_baselines(model, [seq], ("kcf", "csrt", "mil")), frames, seq


def test_baselines_are_scored_on_the_frames_the_model_tracked(scored) -> None:
    model, scores, frames, seq = scored
    for name in ("kcf", "csrt", "mil"):
        alone = track_frames(name, frames[:TRACKED], seq.boxes[0])
        expected = summarize([sequence_curves(alone, seq.boxes[:TRACKED], seq.visible[:TRACKED])])
        for k in HEADLINE:
            assert scores.metrics[f"baseline.{name}.{k}"] == pytest.approx(float(expected[k])), (name, k)
        assert scores.rows[0][f"{name}_auc"] == pytest.approx(float(expected["auc"]))
    # The square moves: the trackers follow it, keeping the first box does not.
    assert scores.metrics["baseline.csrt.auc"] > scores.metrics["first_box_auc"] + 10
    # The model's own numbers and table stay as they were.
    assert {k: scores.metrics[k] for k in model.metrics} == model.metrics
    assert scores.rows[0]["frames"] == TRACKED and model.rows[0].keys() < scores.rows[0].keys()
    assert with_baselines(model, [seq], ()) is model  # none asked: nothing tracked


def test_plots_draw_the_baselines_beside_the_model_and_the_first_box(scored, tmp_path: Path) -> None:
    model, scores, _, _ = scored
    assert set(plotted_curves(model)) == {"SeqTrack", "first box"}
    curves = plotted_curves(scores)
    assert set(curves) == {"SeqTrack", "first box", "KCF", "CSRT", "MIL"}
    assert curves["KCF"]["auc"] == pytest.approx(scores.metrics["baseline.kcf.auc"])
    (tmp_path / "report").mkdir()
    report = write_report(scores, tmp_path / "report", "synthetic")
    names = [p.name for p in report]
    assert names == ["per_sequence.csv", "success_plot.png", "precision_plot.png", "norm_precision_plot.png"]
    header = (tmp_path / "report" / "per_sequence.csv").read_text().splitlines()[0].split(",")
    assert {"kcf_auc", "csrt_auc", "mil_auc"} <= set(header)


def test_console_line_puts_the_baselines_auc_next_to_ours(scored) -> None:
    _, scores, _, _ = scored
    m = scores.metrics
    line = baselines_line(m, ("kcf", "csrt", "mil"))
    assert line == (
        f"AUC: SeqTrack {m['auc']:.2f} | OpenCV baselines KCF {m['baseline.kcf.auc']:.2f}  "
        f"CSRT {m['baseline.csrt.auc']:.2f}  MIL {m['baseline.mil.auc']:.2f} | first box "
        f"{m['first_box_auc']:.2f}  (same frames, same first box)"
    )


def test_sequences_tracked_in_a_process_pool_give_the_boxes_of_one_process(tmp_path: Path) -> None:
    """Three sequences over the pool's processes (one per core): each sequence's boxes equal tracking it
    alone here, MIL's random draws included; a frame that cannot be decoded in a pool process comes
    back as the one-line FrameError naming it."""
    sequences, frames = zip(*(_sequence(tmp_path / f"square-{k}") for k in range(3)), strict=True)
    names = ("kcf", "csrt", "mil")
    pooled = track_baselines(names, list(sequences), [TRACKED] * 3)
    for seq, seq_frames, boxes in zip(sequences, frames, pooled, strict=True):
        for name in names:
            assert np.array_equal(boxes[name], track_frames(name, seq_frames[:TRACKED], seq.boxes[0])), name
    sequences[1].frame_path(2).write_bytes(b"not a png")
    with pytest.raises(FrameError, match=r"00000003.png: .*restore or re-download this sequence"):
        track_baselines(names, list(sequences), [TRACKED] * 3)


def test_the_pool_processes_import_neither_torch_nor_mlflow() -> None:
    """Each pool process imports the module of the function it runs: kept free of torch and MLflow, a
    pool of two starts in 0.3 s instead of 6 s (benchmarks/baseline_pool.py)."""
    code = (
        "import sys, seqtrack_mlflow.evaluation.baseline_pool as p; "
        "print([m for m in ('torch', 'mlflow') if m in sys.modules], p._track_sequence.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["[]", "seqtrack_mlflow.evaluation.baseline_pool"]
