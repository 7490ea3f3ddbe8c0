"""`seqtrack-mlflow`: the click CLI behind every MLproject entry point (same option names).

Options use MLproject's snake_case names (`--patch_size`); the kebab-case spelling works too.
A user mistake ends in one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from seqtrack_mlflow.config import PRESETS, ConfigError, DataConfig, TrackerConfig, build_settings

PRESET_NOTE = "0 = the preset's value"


def _opt(name: str, **kwargs: Any) -> Callable:
    """An option spelled both --snake_case (as MLproject passes it) and --kebab-case."""
    names = [f"--{name}"]
    if "_" in name:
        names.append(f"--{name.replace('_', '-')}")
    return click.option(*names, name, show_default=True, **kwargs)


def _apply(options: list[Callable]) -> Callable:
    def wrap(fn: Callable) -> Callable:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return wrap


DATA_OPTIONS = [
    _opt(
        "source",
        default="auto",
        type=click.Choice(["auto", "local", "hub", "synthetic"]),
        help="LaSOT source: auto = local when a root is given, else the Hugging Face hub",
    ),
    _opt("lasot_root", default="", help="LaSOT root folder for source=local (or env LASOT_ROOT)"),
    _opt("classes", default="airplane,random", help="comma-separated classes; 'random' = one seeded draw"),
    _opt(
        "cache_dir",
        default="",
        help="where hub downloads and synthetic data go (default ~/.cache/seqtrack-mlflow)",
    ),
    _opt("synthetic_sequences", default=4, type=int, help="sequences per class for source=synthetic"),
    _opt("synthetic_frames", default=60, type=int, help="frames per sequence for source=synthetic"),
    _opt("synthetic_size", default="320x240", help="frame size WxH for source=synthetic"),
]
SEED_OPTION = _opt("seed", default=0, type=int, help="seeds the class draw, sampling, init and dropout")

TRAIN_OPTIONS = [
    _opt("preset", default="tiny", type=click.Choice(sorted(PRESETS)), help="model/training preset"),
    _opt("epochs", default=0, type=int, help=f"epochs ({PRESET_NOTE})"),
    _opt("samples_per_epoch", default=0, type=int, help=f"samples per epoch ({PRESET_NOTE})"),
    _opt("batch_size", default=0, type=int, help=f"batch size per process ({PRESET_NOTE})"),
    _opt("lr", default=0.0, type=float, help=f"base learning rate; encoder at 0.1x ({PRESET_NOTE})"),
    _opt("patch_size", default=16, type=int, help="ViT patch size; must divide the crop sizes"),
    _opt("template_size", default=0, type=int, help=f"template crop size ({PRESET_NOTE})"),
    _opt("search_size", default=0, type=int, help=f"search crop size ({PRESET_NOTE})"),
    _opt("pretrained", default="", help="encoder init: timm name, weights file, or none ('' = preset's)"),
    _opt("log_every", default=50, type=int, help="samples between reports"),
    _opt("device", default="auto", help="auto, cpu, cuda or cuda:N"),
    _opt("amp", default=False, type=click.BOOL, help="bf16 autocast (CUDA only)"),
    _opt("workers", default=0, type=int, help="DataLoader worker processes"),
    _opt(
        "system_metrics", default=True, type=click.BOOL, help="log MLflow system metrics (CPU, memory, GPU)"
    ),
    _opt("output_dir", default="outputs", type=click.Path(path_type=Path), help="local run folders"),
]

TRACKER_OPTIONS = [
    _opt(
        "split", default="test", type=click.Choice(["test", "train", "all"]), help="which sequences to track"
    ),
    _opt("max_frames", default=0, type=int, help="frames per sequence (0 = all)"),
    _opt("window_penalty", default=True, type=click.BOOL, help="Hann window on the cx, cy tokens"),
    _opt("update_interval", default=450, type=int, help="template update interval (frames)"),
    _opt("update_threshold", default=0.6, type=float, help="template update confidence threshold"),
]


def _user_errors() -> tuple[type[BaseException], ...]:
    from seqtrack_mlflow.data.lasot import LasotFormatError
    from seqtrack_mlflow.data.sources import DataSourceError
    from seqtrack_mlflow.model.seqtrack import PretrainedError
    from seqtrack_mlflow.train.checkpoints import CheckpointError

    errors: list[type[BaseException]] = [
        ConfigError,
        LasotFormatError,
        DataSourceError,
        PretrainedError,
        CheckpointError,
    ]
    try:
        from seqtrack_mlflow.data.selection import SelectionError

        errors.append(SelectionError)
    except ImportError:
        pass
    return tuple(errors)


def user_facing(fn: Callable) -> Callable:
    """Turn a user's mistake into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _user_errors() as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper


def _data_config(kw: dict[str, Any]) -> DataConfig:
    return DataConfig(
        source=kw["source"],
        lasot_root=kw["lasot_root"],
        classes=kw["classes"],
        cache_dir=kw["cache_dir"],
        synthetic_sequences=kw["synthetic_sequences"],
        synthetic_frames=kw["synthetic_frames"],
        synthetic_size=kw["synthetic_size"],
    )


def _settings(kw: dict[str, Any]):
    model = {
        "patch_size": kw["patch_size"],
        "template_size": kw["template_size"],
        "search_size": kw["search_size"],
        "pretrained": kw["pretrained"],
    }
    train = {
        k: kw[k]
        for k in (
            "epochs",
            "samples_per_epoch",
            "batch_size",
            "lr",
            "log_every",
            "device",
            "amp",
            "workers",
            "system_metrics",
        )
    }
    train["seed"] = kw["seed"]
    return build_settings(kw["preset"], model, train, _data_config(kw))


def _tracker_config(kw: dict[str, Any]) -> TrackerConfig:
    return TrackerConfig(
        window_penalty=kw["window_penalty"],
        update_interval=kw["update_interval"],
        update_threshold=kw["update_threshold"],
        max_frames=kw["max_frames"],
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Train and evaluate SeqTrack on LaSOT subsets, tracked with MLflow."""


@main.command("select-data")
@SEED_OPTION
@_apply(DATA_OPTIONS)
@_opt("output_dir", default="outputs", type=click.Path(path_type=Path))
@user_facing
def select_data_cmd(**kw: Any) -> None:
    """Resolve the classes and record the index and dataset summary in an MLflow run."""
    from seqtrack_mlflow.steps.select_data import run_select_data
    from seqtrack_mlflow.tracking import run_context

    with run_context("select_data") as logger:
        selection = run_select_data(
            _data_config(kw), kw["seed"], kw["output_dir"] / (logger.run_id or "x"), logger
        )
    click.echo(
        f"selected {', '.join(selection.classes)} from {selection.source}: {selection.summary['totals']}"
    )


@main.command("train")
@SEED_OPTION
@_apply(TRAIN_OPTIONS)
@_apply(DATA_OPTIONS)
@_opt("resume", default="", help="checkpoint file, runs:/<id>/checkpoints/epoch_N.ckpt, or a train run id")
@user_facing
def train_cmd(**kw: Any) -> None:
    """Train SeqTrack; `torchrun --nproc_per_node N -m seqtrack_mlflow.cli train ...` for DDP."""
    from seqtrack_mlflow.steps.train import run_train

    settings = _settings(kw)
    result = run_train(
        settings, resume=kw["resume"], epochs_given=kw["epochs"] > 0, output_dir=kw["output_dir"]
    )
    if result.outcome.checkpoint:
        click.echo(f"checkpoint: {result.outcome.checkpoint}  (MLflow run {result.run_id})")


@main.command("evaluate")
@_opt(
    "checkpoint",
    required=True,
    help="checkpoint file, runs:/<id>/checkpoints/epoch_N.ckpt, or a train run id",
)
@_apply(TRACKER_OPTIONS)
@_apply(DATA_OPTIONS)
@_opt("device", default="auto", help="auto, cpu, cuda or cuda:N")
@_opt("output_dir", default="outputs", type=click.Path(path_type=Path))
@user_facing
def evaluate_cmd(**kw: Any) -> None:
    """Track the test split with a trained checkpoint and compute the LaSOT metrics."""
    from seqtrack_mlflow.steps.evaluate import run_evaluate

    run_evaluate(
        kw["checkpoint"],
        _tracker_config(kw),
        split=kw["split"],
        data_override=_data_config(kw),
        device=kw["device"],
        output_dir=kw["output_dir"],
    )


@main.command("main")
@SEED_OPTION
@_apply(TRAIN_OPTIONS)
@_apply(DATA_OPTIONS)
@_apply(TRACKER_OPTIONS)
@user_facing
def main_cmd(**kw: Any) -> None:
    """The whole pipeline: select_data -> train -> evaluate under one parent MLflow run."""
    from seqtrack_mlflow.steps.pipeline import run_pipeline

    result = run_pipeline(_settings(kw), _tracker_config(kw), split=kw["split"], output_dir=kw["output_dir"])
    click.echo(
        f"parent run {result.run_id}: "
        + ", ".join(
            f"{k} {v:.2f}"
            for k, v in result.evaluation.metrics.items()
            if k in ("auc", "precision", "norm_precision")
        )
    )


@main.command("synth-lasot")
@click.argument("root", type=click.Path(path_type=Path))
@_opt("classes", default="airplane,bird", help="comma-separated LaSOT class names")
@_opt("sequences", default=4, type=int, help="sequences per class")
@_opt("frames", default=60, type=int, help="frames per sequence")
@_opt("size", default="320x240", help="frame size WxH (1280x720 is LaSOT's usual size)")
@SEED_OPTION
@user_facing
def synth_cmd(root: Path, classes: str, sequences: int, frames: int, size: str, seed: int) -> None:
    """Write a synthetic LaSOT-format tree (JPEG frames + annotation files) under ROOT."""
    from seqtrack_mlflow.data.sources import parse_size
    from seqtrack_mlflow.data.synthetic import generate_lasot

    names = [c.strip() for c in classes.split(",") if c.strip()]
    dirs = generate_lasot(
        root, names, sequences_per_class=sequences, frames=frames, size=parse_size(size), seed=seed
    )
    click.echo(f"wrote {len(dirs)} sequences under {root}")


if __name__ == "__main__":
    main()
