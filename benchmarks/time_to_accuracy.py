"""Time to accuracy of the demo recipe: LaSOT AUC / P / P_norm against training minutes, on a held-out
synthetic set, with OpenCV's classical trackers (KCF, CSRT, MIL) and "keep the first box" beside it.

Training is the project's trainer (`train/trainer.py`, the `tiny` preset's schedule and the official
sampler) on the demo's data: synthetic LaSOT, `classes=airplane,random` drawn with the seed, the
`synthetic_*` defaults, protocol II's training sequences. After each epoch the checkpoint is tracked
by the evaluation's tracker (`evaluation/tracker.py`, default tracker settings) and scored with the
LaSOT toolkit's metrics (`evaluation/metrics.py`). The held-out set is other classes drawn with another
seed, their 4 protocol II test sequences each (24 sequences by default): nothing of it is trained on.
Training minutes exclude the evaluations; the table names the load average, since the machine may be
shared.

    python benchmarks/time_to_accuracy.py                   # the demo recipe, seed 8: minutes on 2 cores
    python benchmarks/time_to_accuracy.py --quick           # seconds: checks the script runs
    python benchmarks/time_to_accuracy.py --seed 1 --epochs 5 --samples-per-epoch 3200
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import add_threads_arg, apply_threads, markdown_table, print_header

from seqtrack_mlflow.config import DataConfig, SamplingConfig, TrackerConfig, parse_size
from seqtrack_mlflow.config.presets import build_settings
from seqtrack_mlflow.datasets.lasot import LASOT_CLASSES, TEST_SEQUENCE_NUMBERS, read_sequence
from seqtrack_mlflow.datasets.selection import resolve_classes
from seqtrack_mlflow.datasets.synthetic import generate_lasot, render_sequence
from seqtrack_mlflow.evaluation.baseline_pool import track_baselines
from seqtrack_mlflow.evaluation.baselines import BASELINES
from seqtrack_mlflow.evaluation.metrics import sequence_curves, summarize
from seqtrack_mlflow.evaluation.tracker import SeqTrackTracker, track_sequences
from seqtrack_mlflow.model.factory import load_trained_weights
from seqtrack_mlflow.train import checkpoints
from seqtrack_mlflow.train.callbacks import TrainerCallbacks
from seqtrack_mlflow.train.distributed import DistContext
from seqtrack_mlflow.train.trainer import Trainer

HEADLINE = ("auc", "precision", "norm_precision")
HELD_OUT_SEED_OFFSET = 1000  # the held-out set's generator seed: the training seed + this


def held_out_classes(train_classes: list[str], count: int, seed: int) -> list[str]:
    """`count` classes the training data does not hold, drawn with the seed."""
    pool = sorted(set(LASOT_CLASSES) - set(train_classes))
    return sorted(random.Random(seed).sample(pool, count))


def write_held_out(root: Path, classes: list[str], seed: int, frames: int, size: tuple[int, int]) -> list:
    """Protocol II's 4 test sequences of each class, generated with `seed`; the sequences, read back."""
    sequences = []
    for name in classes:
        for number in sorted(TEST_SEQUENCE_NUMBERS[name]):
            folder = root / name / f"{name}-{number}"
            render_sequence(folder, seed, name, number, frames, size)
            sequences.append(read_sequence(folder))
    return sequences


def score(boxes: list[np.ndarray], sequences: list) -> dict[str, float]:
    curves = [
        sequence_curves(b, s.boxes[: len(b)], s.visible[: len(b)])
        for b, s in zip(boxes, sequences, strict=True)
    ]
    summary = summarize(curves)
    return {k: float(summary[k]) for k in HEADLINE}


def reference_scores(sequences: list) -> dict[str, dict[str, float]]:
    """The classical trackers' and the first box's scores on `sequences` (tracked as evaluate does)."""
    tracked = track_baselines(tuple(BASELINES), sequences, [s.num_frames for s in sequences])
    scores = {name: score([t[name] for t in tracked], sequences) for name in BASELINES}
    scores["first_box"] = score([np.repeat(s.boxes[:1], s.num_frames, 0) for s in sequences], sequences)
    return scores


def score_checkpoint(path: Path, sequences: list, eval_batch: int) -> dict[str, float]:
    """The evaluation's tracker (default settings) with the checkpoint's weights, scored on `sequences`."""
    weights = load_trained_weights(path, None)
    tracker = SeqTrackTracker.from_weights(weights.model, weights.state_dict, TrackerConfig(), "cpu")
    tracked = track_sequences(tracker, sequences, 0, eval_batch)
    return score([boxes for boxes, _ in tracked], sequences)


def table_row(epoch: int, trained_s: float, samples: int, m: dict[str, float]) -> list[object]:
    row = [epoch, f"{trained_s / 60:.2f}", f"{samples:,}", f"{samples / trained_s:.1f}"]
    return row + [f"{m[k]:.1f}" for k in HEADLINE] + [f"{os.getloadavg()[0]:.1f}"]


class EvaluateEachEpoch(TrainerCallbacks):
    """Scores every epoch's checkpoint on the held-out set; the clock excludes the scoring."""

    def __init__(self, sequences: list, samples_per_epoch: int, eval_batch: int):
        self.sequences, self.samples_per_epoch, self.eval_batch = sequences, samples_per_epoch, eval_batch
        self.start = time.perf_counter()
        self.scoring = 0.0
        self.rows: list[list[object]] = []

    def on_checkpoint(self, path: Path, epoch: int) -> None:
        trained_s = time.perf_counter() - self.start - self.scoring
        began = time.perf_counter()
        m = score_checkpoint(path, self.sequences, self.eval_batch)
        self.scoring += time.perf_counter() - began
        self.rows.append(table_row(epoch, trained_s, epoch * self.samples_per_epoch, m))
        print(f"epoch {epoch}: {trained_s / 60:.2f} min, AUC {m['auc']:.1f}", flush=True)


def follow_run(folder: Path, sequences: list, eval_batch: int, wait_s: float) -> list[list[object]]:
    """Scores `folder/epoch_N.ckpt` for every epoch of the run as each appears (a run trained elsewhere,
    e.g. by `mlflow run`: its `outputs/<run>/checkpoints`); minutes are the checkpoint's own training
    time (`elapsed_seconds`)."""
    rows: list[list[object]] = []
    epoch, epochs, deadline = 1, None, time.monotonic() + wait_s
    while epochs is None or epoch <= epochs:
        path = folder / checkpoints.checkpoint_name(epoch)
        if not path.is_file():
            if time.monotonic() > deadline:
                raise SystemExit(f"{path} did not appear within --wait {wait_s:.0f} s")
            time.sleep(5)
            continue
        ckpt = checkpoints.load(path)
        epochs = ckpt.settings.train.epochs
        m = score_checkpoint(path, sequences, eval_batch)
        rows.append(table_row(epoch, ckpt.elapsed_seconds, ckpt.global_step, m))
        print(f"epoch {epoch}: {ckpt.elapsed_seconds / 60:.2f} min, AUC {m['auc']:.1f}", flush=True)
        epoch += 1
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=8, help="training seed (the demo's: 8)")
    parser.add_argument("--classes", default=DataConfig.classes, help="training classes (the demo's)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the tiny preset's")
    parser.add_argument("--samples-per-epoch", type=int, default=None, help="default: the tiny preset's")
    parser.add_argument("--held-out-classes", type=int, default=6, help="classes x 4 test sequences")
    parser.add_argument("--held-out-frames", type=int, default=None, help="default: synthetic_frames")
    parser.add_argument("--eval-batch", type=int, default=4, help="sequences tracked in lockstep")
    parser.add_argument(
        "--checkpoints",
        type=Path,
        help="score the epoch_N.ckpt files of a run trained elsewhere (its checkpoints folder, the "
        "demo's seed and classes), each as it appears, instead of training here",
    )
    parser.add_argument("--wait", type=float, default=3600, help="--checkpoints: seconds to wait for one")
    parser.add_argument("--quick", action="store_true", help="2 short epochs, 4 held-out sequences")
    add_threads_arg(parser)
    args = parser.parse_args()
    apply_threads(args.threads)
    data = DataConfig(source="synthetic")
    size = parse_size(data.synthetic_size)
    train_over = {"seed": args.seed, "epochs": args.epochs, "samples_per_epoch": args.samples_per_epoch}
    frames = args.held_out_frames or data.synthetic_frames
    held_count = args.held_out_classes
    if args.quick:
        train_over.update(epochs=2, samples_per_epoch=64)
        frames, held_count = 30, 1
    settings = build_settings("tiny", {}, train_over, data, SamplingConfig())
    classes = resolve_classes(args.classes, LASOT_CLASSES, args.seed)
    held_classes = held_out_classes(classes, held_count, args.seed)
    tc = settings.train
    with tempfile.TemporaryDirectory(prefix="time_to_accuracy_") as tmp:
        root = Path(tmp)
        held = write_held_out(root / "held_out", held_classes, args.seed + HELD_OUT_SEED_OFFSET, frames, size)
        references = reference_scores(held)
        if args.checkpoints is not None:
            rows = follow_run(args.checkpoints, held, args.eval_batch, args.wait)
            settings = checkpoints.load(args.checkpoints / checkpoints.checkpoint_name(1)).settings
            if settings.train.seed != args.seed:
                raise SystemExit(f"{args.checkpoints} holds seed {settings.train.seed}: pass --seed to match")
            tc = settings.train
        else:
            folders = generate_lasot(
                root / "train", classes, data.synthetic_sequences, data.synthetic_frames, size, args.seed
            )
            # The order select_data indexes them in (class, then number), so the samples are the demo's.
            train = sorted(
                (s for s in map(read_sequence, folders) if s.split == "train"),
                key=lambda s: (s.class_name, s.number),
            )
            callback = EvaluateEachEpoch(held, tc.samples_per_epoch, args.eval_batch)
            ctx = DistContext(0, 1, 0, torch.device("cpu"))
            trainer = Trainer(settings, train, root / "run", ctx, {}, callbacks=callback)
            trainer.log.console = "bar"
            trainer.fit()
            rows = callback.rows
    notes = [
        f"training: preset {settings.preset}, seed {args.seed}, classes {','.join(classes)} (synthetic, "
        f"{data.synthetic_sequences} sequences of {data.synthetic_frames} frames per class), "
        f"{tc.epochs} epochs x "
        f"{tc.samples_per_epoch:,} samples, batch {tc.batch_size}, lr {tc.lr:g} (x{tc.lr_gamma:g} "
        f"from epoch {tc.lr_drop_epoch + 1})",
        f"held out: {len(held)} synthetic sequences of {frames} frames, classes {', '.join(held_classes)}, "
        f"generator seed {args.seed + HELD_OUT_SEED_OFFSET} (no class or sequence of the training data)",
        "minutes: training only (the per-epoch scoring excluded; with --checkpoints the checkpoint's own "
        "training time); load: 1-minute load average at scoring",
    ]
    print_header("Time to accuracy (synthetic, held-out set)", torch.device("cpu"), notes)
    headers = ["epoch", "train min", "samples", "samples/s", "AUC", "P", "P_norm", "load"]
    print(markdown_table(headers, rows))
    print()
    ref_rows = [[name, *(f"{references[name][k]:.1f}" for k in HEADLINE)] for name in references]
    print(markdown_table(["reference on the same set", "AUC", "P", "P_norm"], ref_rows))
    best = max(v["auc"] for k, v in references.items() if k != "first_box")
    final = float(rows[-1][4])
    print(f"\nfinal AUC {final:.1f}, best classical tracker {best:.1f}: margin {final - best:+.1f} points")


if __name__ == "__main__":
    main()
