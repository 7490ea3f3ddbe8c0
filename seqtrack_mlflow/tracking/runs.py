"""The run lifecycle: start or attach to an MLflow run, and end it with the right status, online or not."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import mlflow

from seqtrack_mlflow.tracking.closing import start_line
from seqtrack_mlflow.tracking.experiment import mark_experiment
from seqtrack_mlflow.tracking.health import fail_fast_http, say
from seqtrack_mlflow.tracking.logger import RunLogger
from seqtrack_mlflow.tracking.store import TrackingError, store_uri
from seqtrack_mlflow.train.interrupt import Interrupted

INTERRUPTED_TAG = "seqtrack.interrupted"  # the signal that stopped the run


class RunNotUploaded(TrackingError):
    """The run ended while the tracking server was away: its pending data waits in a local folder."""


@contextlib.contextmanager
def run_context(
    run_name: str,
    *,
    run_id: str | None = None,
    nested: bool = False,
    system_metrics: bool = False,
    enabled: bool = True,
) -> Iterator[RunLogger]:
    """Start (or attach to) an MLflow run and yield its logger.

    Under `mlflow run` the process finds its run in MLFLOW_RUN_ID and attaches to it; a nested call
    opens a child of the active run. A run that raises is ended FAILED, one stopped by SIGTERM/SIGINT
    KILLED (each nested context ends its own run, innermost first), so no RUNNING run is left.

    The tracking server may go away meanwhile (see `RunLogger`): when it is still away at the end, the
    pending metrics, artifacts and the final status are written to the run's local folder and the run
    ends with one line naming that folder and `seqtrack-mlflow sync <folder>`, the command that uploads
    them: a `RunNotUploaded` error (exit status 2) after a run that succeeded, a warning line beside the
    run's own error otherwise.
    """
    if not enabled:
        yield RunLogger(None)
        return
    if system_metrics:
        _require_psutil()
    fail_fast_http()
    run = mlflow.start_run(
        run_id=run_id, run_name=None if run_id else run_name, nested=nested, log_system_metrics=system_metrics
    )
    logger = RunLogger(run.info.run_id)
    status = "FINISHED"
    try:
        where = None if nested else mark_experiment(run.info.experiment_id)
        if where is not None:  # the console's first MLflow line: where the run (and its children) land
            say(start_line(where))
        yield logger
    except (KeyboardInterrupt, Interrupted) as exc:
        # Stopped by a signal, not failed: KILLED. The tag survives `mlflow run`'s launcher, which
        # marks its own run FAILED after a Ctrl-C whatever the run's status (README, "Failures").
        status = "KILLED"
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        with contextlib.suppress(Exception):
            logger.set_tags({INTERRUPTED_TAG: signal.Signals(signum).name})
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        message = end_run(logger, status)
        if message and status == "FINISHED":
            raise RunNotUploaded(message)
        if message:
            say(f"warning: {message}")


def end_run(logger: RunLogger, status: str) -> str | None:
    """End the active run with `status`; None, or the one line saying where the pending data waits."""
    folder = logger.finish()
    if folder is None:
        try:
            mlflow.end_run(status)
            return None
        except Exception as exc:  # noqa: BLE001 - the server went away at the last moment
            logger.health.lost(exc)
    else:
        with contextlib.suppress(Exception):  # pops the active run; the store cannot record the end
            mlflow.end_run(status)
    _stop_system_metrics(logger.run_id)
    folder, points, calls = logger.persist(status)
    dropped = f", {logger.dropped_points} older points dropped" if logger.dropped_points else ""
    return (
        f"the tracking server {store_uri()} is unreachable: run {logger.run_id} ended {status} and is "
        f"kept in {folder} ({points} metric points and {calls} artifacts/params/tags not uploaded{dropped}); "
        f"upload them with: seqtrack-mlflow sync {folder}"
    )


def _stop_system_metrics(run_id: str | None) -> None:
    """Stop the run's system-metrics monitor after an offline end.

    `mlflow.end_run` stops it only after the store has recorded the end: when the store is away, the
    monitor thread would go on sampling (and failing to send) for the life of the process. MLflow has
    no public handle on it, so this reaches into `mlflow.tracking.fluent.run_id_to_system_metrics_monitor`
    (private: run id -> monitor), the one place the project touches MLflow internals. Should a later
    MLflow rename it, the monitor is left running: a thread more, no result changed."""
    from mlflow.tracking import fluent

    monitors = getattr(fluent, "run_id_to_system_metrics_monitor", {})
    monitor = monitors.pop(run_id, None)
    if monitor is not None:
        with contextlib.suppress(Exception):
            monitor.finish()


def _require_psutil() -> None:
    try:
        import psutil  # noqa: F401
    except ImportError as exc:  # pragma: no cover - psutil is a declared dependency
        raise RuntimeError(
            "system metrics need psutil: pip install psutil, or pass -P system_metrics=false"
        ) from exc
