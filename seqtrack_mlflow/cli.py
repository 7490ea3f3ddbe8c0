"""`seqtrack-mlflow`: the click CLI behind every MLproject entry point (same option names).

The options of each step are generated from the settings declarations in `config/`. They use
MLproject's snake_case names (`--patch_size`); the kebab-case spelling works too. A user mistake ends in
one line on stderr and exit status 2, never a traceback: the errors of the steps through `user_facing`
(each command's decorator), click's own (unknown option, bad value, missing option) through `_Group`,
the group every command is registered on, so no command can forget it.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from seqtrack_mlflow.config import (
    ConfigError,
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
from seqtrack_mlflow.fileio import is_disk_full

if TYPE_CHECKING:  # the tracking package imports MLflow: commands import what they use when they run
    from seqtrack_mlflow.tracking import RegisteredTracker

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
        help=s.help + (f" [unset: {unset}]" if unset else ""),
    )


def step_options(step: str) -> Callable:
    """Decorate a command with every option its step takes, in declaration order."""

    def wrap(fn: Callable) -> Callable:
        for s in reversed(step_settings(step)):
            fn = _option(s, step)(fn)
        return fn

    return wrap


def _user_errors() -> tuple[type[BaseException], ...]:
    """Every error class whose message is written for the user (one line naming the input and the fix)."""
    from seqtrack_mlflow.datasets.base import DatasetFormatError, DataSourceError
    from seqtrack_mlflow.datasets.selection import SelectionError
    from seqtrack_mlflow.evaluation.metrics import MetricsError
    from seqtrack_mlflow.evaluation.tracker import TrackerError
    from seqtrack_mlflow.inputs.processing import CropWindowError
    from seqtrack_mlflow.inputs.sampling import SamplingError
    from seqtrack_mlflow.model.factory import OfficialCheckpointError, PretrainedError, WeightsError
    from seqtrack_mlflow.tracking import TrackingError
    from seqtrack_mlflow.train.checkpoints import CheckpointError
    from seqtrack_mlflow.video.source import VideoError

    return (
        ConfigError,
        DatasetFormatError,
        DataSourceError,
        PretrainedError,
        CheckpointError,
        SelectionError,
        TrackingError,
        SamplingError,
        CropWindowError,
        TrackerError,
        MetricsError,
        OfficialCheckpointError,
        VideoError,
        WeightsError,
    )


def one_line(exc: BaseException) -> str:
    """The error's message on one line. An error re-raised from a DataLoader worker carries the
    worker's traceback in its message: keep only the original message (its last line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if any(line.startswith("Original Traceback") for line in lines):
        last = lines[-1]
        name = type(exc).__name__
        return last.split(f"{name}: ", 1)[1] if f"{name}: " in last else last
    return " ".join(lines)


def user_facing(fn: Callable) -> Callable:
    """Turn a user's mistake, or a full disk, into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from seqtrack_mlflow.config.job_key import JobFinished
        from seqtrack_mlflow.train.interrupt import Interrupted, raise_on_signals

        raise_on_signals()  # SIGTERM unwinds like Ctrl-C: every open run ends KILLED
        # MLflow's INFO lines ("Skip logging GPU metrics", ...) between the reports are noise here. MLflow
        # (re)configures its loggers from MLFLOW_LOGGING_LEVEL as its modules load; a user's value wins.
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        logging.getLogger("mlflow").setLevel(os.environ["MLFLOW_LOGGING_LEVEL"].upper())
        try:
            return fn(*args, **kwargs)
        except JobFinished as exc:  # a requeue after the end: done, not failed
            click.echo(str(exc))
            return None
        except (Interrupted, KeyboardInterrupt) as exc:
            stop = exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT)
            click.echo(f"interrupted: {one_line(stop)}", err=True)
            sys.exit(stop.exit_code)
        except _user_errors() as exc:
            click.echo(f"error: {one_line(exc)}", err=True)
            sys.exit(2)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            where = f" writing {exc.filename}" if exc.filename else ""
            click.echo(
                f"error: no space left on the device{where}: free space there, or set -P output_dir to a "
                "folder on a disk with room (a train run resumes from its last checkpoint)",
                err=True,
            )
            sys.exit(2)

    return wrapper


class _OneLineUsageError(click.UsageError):
    """click's usage errors as one `error:` line (no usage text), naming the fix; exit status 2."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _usage_message(exc: click.UsageError) -> str:
    ctx = exc.ctx
    path = ctx.command_path if ctx is not None else "seqtrack-mlflow"
    help_hint = f"see `{path} --help`"
    if isinstance(exc, click.NoSuchOption):
        name = exc.option_name
        # Each option is spelled --snake_case and --kebab-case: name the snake one (MLproject's -P name).
        close = list(dict.fromkeys("--" + p.lstrip("-").replace("-", "_") for p in exc.possibilities))[:4]
        plain = name.lstrip("-")
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        return (
            f"unknown option {name} for `{path}` (-P {plain}=... with mlflow run): {hint}"
            f"{help_hint} for the options it takes"
        )
    message = " ".join(exc.format_message().split()).rstrip(".")
    return f"{message}: {help_hint}"


def _one_line_usage(exc: click.UsageError) -> click.UsageError:
    if isinstance(exc, _OneLineUsageError) or type(exc).__name__ == "NoArgsIsHelpError":
        return exc  # already one line / `seqtrack-mlflow` alone prints the help
    return _OneLineUsageError(_usage_message(exc), exc.ctx)


class _Group(click.Group):
    """The command group: click's usage errors of the group and of every command become one line."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            raise _one_line_usage(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _one_line_usage(exc) from None


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


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Train and evaluate SeqTrack on LaSOT subsets, tracked with MLflow."""


@main.command("select-data", epilog=ENVIRONMENT_EPILOG)
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


@main.command("train", epilog=ENVIRONMENT_EPILOG)
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


@main.command("evaluate", epilog=ENVIRONMENT_EPILOG)
@step_options("evaluate")
@user_facing
def evaluate_cmd(**kw: Any) -> None:
    """Track the test split with a checkpoint and compute the LaSOT metrics."""
    from seqtrack_mlflow.steps.evaluate import run_evaluate

    run = run_config(kw)
    run_evaluate(
        run.checkpoint or "",
        tracker_config(kw),
        data_override=given_settings(kw, "evaluate", DataConfig),
        data_run=run.data,
        preset=kw["preset"],
        device=kw["device"],
        output_dir=Path(run.output_dir),
    )


@main.command("track", epilog=ENVIRONMENT_EPILOG)
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


@main.command("export-onnx")
@click.option(
    "--checkpoint", required=True, help="a checkpoint file, runs:/ URI or train run id (as evaluate)"
)
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="folder to write into")
@click.option("--preset", default=None, help="check an official file's shapes against this preset")
@click.option("--int8", is_flag=True, help="also write encoder.int8.onnx (dynamic int8, onnxruntime)")
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


@main.command("main", epilog=ENVIRONMENT_EPILOG)
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
    _echo_registered(result.registered)


def _echo_registered(registered: RegisteredTracker | None) -> None:
    """The closing lines of main and sweep: the registered tracker and the command to try it with."""
    if registered is None:
        return
    click.echo(f"registered model: {registered.uri} (train run {registered.run_id})")
    click.echo(
        "try it: mlflow run . --env-manager local -e track -P video=<your video> -P box=x,y,w,h "
        f"-P checkpoint={registered.uri}"
    )


@main.command("sweep", epilog=ENVIRONMENT_EPILOG)
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
    _echo_registered(result.registered)


@main.command("mlproject")
def mlproject_cmd() -> None:
    """Print the MLproject file generated from the settings (`seqtrack-mlflow mlproject > MLproject`)."""
    from seqtrack_mlflow.project_files import mlproject_text

    click.echo(mlproject_text(), nl=False)


@main.command("conda-env")
def conda_env_cmd() -> None:
    """Print conda.yaml generated from pyproject.toml (`seqtrack-mlflow conda-env > conda.yaml`)."""
    from seqtrack_mlflow.project_files import conda_env_text

    click.echo(conda_env_text(), nl=False)


@main.command("sync")
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


@main.command("synth-lasot")
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


@main.command("datasets")
@user_facing
def datasets_cmd() -> None:
    """List the registered datasets: format, the `source` values they serve, where the root comes from
    (setting and env variable), whether one is found on this machine, and the evaluation protocol."""
    from seqtrack_mlflow.datasets import registry

    click.echo(registry.format_table(registry.rows(DataConfig())))


if __name__ == "__main__":
    main()
