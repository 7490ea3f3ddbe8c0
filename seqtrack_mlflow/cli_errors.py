"""The CLI's user-error path: a user's mistake ends in one line on stderr and exit status 2, never a
traceback. The errors of the steps go through `user_facing` (each command's decorator), click's own
(unknown option, bad value, missing option) through `OneLineGroup`, the group every command is
registered on, so no command can forget it."""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import click

from seqtrack_mlflow.config import ConfigError
from seqtrack_mlflow.fileio import is_disk_full


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


class OneLineGroup(click.Group):
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
