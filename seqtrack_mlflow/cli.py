"""`seqtrack-mlflow`: the click CLI behind every MLproject entry point (same option names).

The options of each step are generated from the settings declarations in `config/`. They use
MLproject's snake_case names (`--patch_size`); the kebab-case spelling works too. A user mistake ends in
one line on stderr and exit status 2, never a traceback (`cli_errors`: `user_facing` on each command,
`OneLineGroup` for click's own errors).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from seqtrack_mlflow.cli_errors import OneLineGroup, one_line, user_facing
from seqtrack_mlflow.config import (
    DataConfig,
    RunConfig,
    Setting,
    TrackerConfig,
    build_settings,
    environment_help,
    given_for,
    parse_size,
    step_settings,
)
from seqtrack_mlflow.config.job_key import job_key

if TYPE_CHECKING:  # the tracking package imports MLflow: commands import what they use when they run
    from seqtrack_mlflow.tracking import RegisteredTracker

__all__ = ["main", "one_line", "user_facing"]  # the error path's names stay importable from here

# `--help` ends with the environment variables a step reads (`\b`: click keeps these lines as they are).
ENVIRONMENT_EPILOG = "\b\nEnvironment variables:\n" + environment_help()
_CLICK_TYPES = {int: click.INT, float: click.FLOAT, bool: click.BOOL, str: click.STRING}


def _option(s: Setting, step: str) -> Callable:
    """One generated option, spelled both --snake_case (as MLproject passes it) and --kebab-case."""
    names = [f"--{s.name}"] + ([f"--{s.name.replace('_', '-')}"] if "_" in s.name else [])
    default = s.default_in(step)
    unset = s.unset_meaning(step) if default is None else ""
    return click.option(
        *names,
        s.name,
        type=click.Choice(s.choices) if s.choices else _CLICK_TYPES[s.type],
        default=default,
        required=step in s.required,
        show_default=default is not None,
        help=s.help_in(step) + (f" [unset: {unset}]" if unset else ""),
    )


def step_options(step: str) -> Callable:
    """Decorate a command with every option its step takes, in declaration order."""

    def wrap(fn: Callable) -> Callable:
        for s in reversed(step_settings(step)):
            fn = _option(s, step)(fn)
        return fn

    return wrap


def run_config(kw: dict[str, Any]) -> RunConfig:
    run = RunConfig(**given_for(RunConfig, kw))
    run.validate()
    return run


def given_settings(kw: dict[str, Any], step: str, cls: type | None = None) -> dict[str, Any]:
    """The settings the user gave (`Setting.given`: set, and not the option's default), optionally only
    those of settings class `cls`: the one meaning of "given" for every command."""
    return {
        s.name: kw[s.name]
        for s in step_settings(step)
        if s.given(kw[s.name], step) and (cls is None or s.owner is cls)
    }


def data_config(kw: dict[str, Any]) -> DataConfig:
    return DataConfig(**given_for(DataConfig, kw))


def tracker_config(kw: dict[str, Any]) -> TrackerConfig:
    return TrackerConfig(**given_for(TrackerConfig, kw)).resolved()


def train_settings(kw: dict[str, Any]):
    from seqtrack_mlflow.config import ModelConfig, TrainConfig

    return build_settings(
        kw["preset"] or RunConfig().preset,
        given_for(ModelConfig, kw),
        given_for(TrainConfig, kw),
        data_config(kw),
    )


@click.group(cls=OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Train and evaluate SeqTrack on LaSOT subsets, tracked with MLflow."""


@main.command(
    "select-data", short_help="Resolve the classes; record the index and summary.", epilog=ENVIRONMENT_EPILOG
)
@step_options("select_data")
@user_facing
def select_data_cmd(**kw: Any) -> None:
    """Resolve the classes and record the index and dataset summary in an MLflow run."""
    from seqtrack_mlflow.steps.select_data import run_select_data

    result = run_select_data(data_config(kw), kw["seed"], Path(kw["output_dir"]))
    selection = result.selection
    click.echo(
        f"selected {', '.join(selection.classes)} from {selection.source}: {selection.summary['totals']}"
        f"  (MLflow run {result.run_id})"
    )
    echo_closing(("select_data", result.run_id))


@main.command("train", short_help="Train SeqTrack (torchrun for DDP).", epilog=ENVIRONMENT_EPILOG)
@step_options("train")
@user_facing
def train_cmd(**kw: Any) -> None:
    """Train SeqTrack; `torchrun --nproc_per_node N -m seqtrack_mlflow.cli train ...` for DDP."""
    from seqtrack_mlflow.steps.train import run_train

    run = run_config(kw)
    result = run_train(
        train_settings(kw),
        resume=run.resume,
        data_run=run.data,
        given=given_settings(kw, "train"),
        output_dir=Path(run.output_dir),
        run_key=job_key(run.run_key, os.environ),
    )
    if result.outcome.checkpoint:
        click.echo(f"checkpoint: {result.outcome.checkpoint}  (MLflow run {result.run_id})")
        echo_closing(("train", result.run_id), train_run_id=result.run_id, checkpoint=result.checkpoint_ref)


@main.command(
    "evaluate",
    short_help="Track a test split with a checkpoint: the LaSOT metrics.",
    epilog=ENVIRONMENT_EPILOG,
)
@step_options("evaluate")
@user_facing
def evaluate_cmd(**kw: Any) -> None:
    """Track the test split with a checkpoint and compute the LaSOT metrics."""
    from seqtrack_mlflow.steps.evaluate import run_evaluate

    run = run_config(kw)
    result = run_evaluate(
        run.checkpoint or "",
        tracker_config(kw),
        data_override=given_settings(kw, "evaluate", DataConfig),
        data_run=run.data,
        preset=kw["preset"],
        device=kw["device"],
        output_dir=Path(run.output_dir),
    )
    echo_closing(("evaluate", result.run_id))


@main.command("track", short_help="Track one target through your video.", epilog=ENVIRONMENT_EPILOG)
@step_options("track")
@user_facing
def track_cmd(**kw: Any) -> None:
    """Track one target through your video (a file or a folder of frames) from its box in the first
    frame: boxes.txt, boxes.csv, tracked.mp4 and preview.gif, logged as a `track` MLflow run."""
    from seqtrack_mlflow.config import VideoConfig
    from seqtrack_mlflow.steps.track import run_track

    run = run_config(kw)
    result = run_track(
        VideoConfig(**given_for(VideoConfig, kw)),
        run.checkpoint or "",
        tracker_config(kw),
        preset=kw["preset"],
        device=kw["device"],
        output_dir=Path(run.output_dir),
    )
    tracked = result.tracked
    confidence = tracked.mean_confidence
    click.echo(
        f"tracked {tracked.frames} frames of {result.source} at {tracked.fps:.1f} frames/s"
        + (f", mean confidence {confidence:.2f}" if confidence is not None else "")
        + f", {len(tracked.updates)} template updates"
    )
    files = ", ".join(f"{f.name} ({_size(f.stat().st_size)})" for f in tracked.files)
    click.echo(f"{result.out_dir}/: {files}  (MLflow run {result.run_id})")
    echo_closing(("track", result.run_id))


@main.command("export-onnx", short_help="Export a checkpoint's model as ONNX files.")
@click.option(
    "--checkpoint", required=True, help="a checkpoint file, runs:/ URI or train run id (as evaluate)"
)
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="folder to write into")
@click.option("--preset", default=None, help="check an official file's shapes against this preset")
@click.option("--int8", is_flag=True, help="also write encoder.int8w7.onnx (dynamic int8, onnxruntime)")
@user_facing
def export_onnx_cmd(checkpoint: str, out: Path, preset: str | None, int8: bool) -> None:
    """Export a checkpoint's model as ONNX: encoder.onnx (templates + search -> the decoder's memory
    keys/values), decoder_step.onnx (one cached greedy step) and seqtrack_onnx.json; `-P backend=onnx`
    does this by itself (README, "Use the tracker")."""
    from seqtrack_mlflow.steps.export_onnx import run_export_onnx

    export = run_export_onnx(checkpoint, out, preset=preset, int8=int8)
    files = sorted(p for p in export.folder.iterdir() if p.is_file())
    click.echo(f"{export.folder}/: " + ", ".join(f"{f.name} ({_size(f.stat().st_size)})" for f in files))


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} KB" if n >= 1e3 else f"{n} bytes"


@main.command(
    "main", short_help="The whole pipeline: select_data, train, evaluate.", epilog=ENVIRONMENT_EPILOG
)
@step_options("main")
@user_facing
def main_cmd(**kw: Any) -> None:
    """The whole pipeline: select_data -> train -> evaluate under one parent MLflow run."""
    from seqtrack_mlflow.workflows.main import run_pipeline

    run = run_config(kw)
    result = run_pipeline(
        train_settings(kw),
        tracker_config(kw),
        output_dir=Path(run.output_dir),
        model_name=run.model_name,
        resume=run.resume,
        run_key=job_key(run.run_key, os.environ),
    )
    click.echo(
        f"parent run {result.run_id}: "
        + ", ".join(
            f"{k} {v:.2f}"
            for k, v in result.evaluation.metrics.items()
            if k in ("auc", "precision", "norm_precision")
        )
    )
    trained = result.train
    echo_closing(
        ("main", result.run_id),
        [
            ("select_data", result.data_run_id),
            ("train", trained.run_id),
            ("evaluate", result.evaluation.run_id),
        ],
        train_run_id=trained.run_id,
        checkpoint=trained.checkpoint_ref,
        registered=result.registered,
    )


def echo_closing(
    run: tuple[str, str | None],
    nested: list[tuple[str, str | None]] | None = None,
    *,
    train_run_id: str | None = None,
    checkpoint: str | None = None,
    registered: RegisteredTracker | None = None,
) -> None:
    """A run's last lines: the UI command, experiment, run ids, checkpoints and download command; a
    registered tracker and the command to try it with."""
    from seqtrack_mlflow.tracking import closing_lines, registered_lines, run_placement

    where = run_placement(run[1]) if run[1] else None
    model = (registered.uri, registered.run_id) if registered else None
    if where is None:  # the store did not answer: the registered tracker, if any, all the same
        lines = registered_lines(*model) if model else []
    else:
        folder = f"runs:/{train_run_id}/checkpoints/" if train_run_id else None
        lines = closing_lines(where, run, nested or [], folder, checkpoint if folder else None, model)
    for line in lines:
        click.echo(line)


@main.command("sweep", short_help="An Optuna sweep of train + evaluate trials.", epilog=ENVIRONMENT_EPILOG)
@step_options("sweep")
@user_facing
def sweep_cmd(**kw: Any) -> None:
    """Optuna sweep: each trial a nested train + evaluate run pair under one parent run, the objective
    the evaluation AUC, bad trials pruned on their epoch IoU. A setting given with a value other than its
    default stays fixed (out of the default space)."""
    from seqtrack_mlflow.config import SweepConfig
    from seqtrack_mlflow.workflows.sweep import run_sweep

    result = run_sweep(
        train_settings(kw),
        tracker_config(kw),
        SweepConfig(**given_for(SweepConfig, kw)),
        given=set(given_settings(kw, "sweep")),
        output_dir=Path(kw["output_dir"]),
        model_name=kw["model_name"],
    )
    best = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.best_params.items()
    )
    click.echo(
        f"sweep run {result.run_id}: best trial {result.best_number} of study {result.study_name}, "
        f"AUC {result.best_value:.2f} ({best})"
    )
    ran = [t.train_run_id for t in result.trials if t.number == result.best_number]  # this process's
    best_train = ran[0] if ran else result.registered.run_id if result.registered else None
    echo_closing(
        ("sweep", result.run_id),
        [(f"trial-{result.best_number}-train (best)", best_train)],
        train_run_id=best_train,
        registered=result.registered,
    )


@main.command("mlproject", short_help="Print the MLproject file generated from the settings.")
def mlproject_cmd() -> None:
    """Print the MLproject file generated from the settings (`seqtrack-mlflow mlproject > MLproject`)."""
    from seqtrack_mlflow.project_files import mlproject_text

    click.echo(mlproject_text(), nl=False)


@main.command("conda-env", short_help="Print conda.yaml generated from pyproject.toml.")
def conda_env_cmd() -> None:
    """Print conda.yaml generated from pyproject.toml (`seqtrack-mlflow conda-env > conda.yaml`)."""
    from seqtrack_mlflow.project_files import conda_env_text

    click.echo(conda_env_text(), nl=False)


@main.command("sync", short_help="Upload a run kept locally while the server was away.")
@click.argument("folder", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "--tracking-uri",
    "tracking_uri",
    default=None,
    help="the store to upload to [unset: MLFLOW_TRACKING_URI; the folder's own record is only shown]",
)
@user_facing
def sync_cmd(folder: Path, tracking_uri: str | None) -> None:
    """Upload what a run that ended while the tracking server was away kept in FOLDER (its metrics,
    checkpoints and other artifacts) and set the run's final status. Every record is checked first: only
    files inside FOLDER are uploaded, and a record this package did not write stops it (one line, exit 2)."""
    from seqtrack_mlflow.tracking import sync_run_folder

    click.echo(sync_run_folder(folder, tracking_uri=tracking_uri))


@main.command("synth-lasot", short_help="Write a synthetic LaSOT-format tree.")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--classes", default="airplane,bird", show_default=True, help="comma-separated LaSOT classes")
@click.option("--sequences", default=4, show_default=True, type=int, help="sequences per class")
@click.option("--frames", default=60, show_default=True, type=int, help="frames per sequence")
@click.option("--size", default="320x240", show_default=True, help="frame size WxH (LaSOT: mostly 1280x720)")
@click.option("--seed", default=0, show_default=True, type=int, help="generator seed")
@user_facing
def synth_cmd(root: Path, classes: str, sequences: int, frames: int, size: str, seed: int) -> None:
    """Write a synthetic LaSOT-format tree (JPEG frames + annotation files) under ROOT."""
    from seqtrack_mlflow.datasets import synthetic

    names = [c.strip() for c in classes.split(",") if c.strip()]
    dirs = synthetic.generate_lasot(
        root, names, sequences_per_class=sequences, frames=frames, size=parse_size(size), seed=seed
    )
    click.echo(f"wrote {len(dirs)} sequences under {root}")


@main.command("datasets", short_help="List the registered datasets and where they are found.")
@user_facing
def datasets_cmd() -> None:
    """List the registered datasets: format, the `source` values they serve, where the root comes from
    (setting and env variable), whether one is found on this machine, and the evaluation protocol."""
    from seqtrack_mlflow.datasets import registry

    click.echo(registry.format_table(registry.rows(DataConfig())))


if __name__ == "__main__":
    main()
