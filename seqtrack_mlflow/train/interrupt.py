"""SIGTERM and SIGINT: what `kill`, `docker stop`, `timeout`, job schedulers and Ctrl-C send.

Outside training a signal raises `Interrupted` (SIGINT: KeyboardInterrupt, as Python does), so every
run context unwinds and ends its MLflow run KILLED. During training the first signal only asks the
trainer to stop at the next step boundary, where it writes a checkpoint of the state so far; a second
signal raises at once, for a user who will not wait. A signal within `ECHO_WINDOW_S` of the first is
taken as the same stop (a launcher forwarding it, or the process group getting it twice).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """Work ended by a signal. A BaseException, like KeyboardInterrupt: no `except Exception` eats it."""

    def __init__(self, signum: int, message: str = ""):
        self.signum = signum
        super().__init__(message or f"interrupted by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 143 for SIGTERM, 130 for SIGINT


# A signal that follows the first within this many seconds is the same stop, not a second one:
# `mlflow run` answers Ctrl-C by sending SIGTERM to its child at once, and the process group gets both.
ECHO_WINDOW_S = 2.0


class _FirstSignal:
    """When the first signal came; later ones inside the echo window are ignored, so the clean-up
    that ends the runs KILLED is not itself interrupted."""

    def __init__(self) -> None:
        self.at: float | None = None

    def is_echo(self) -> bool:
        now = time.monotonic()
        if self.at is None:
            self.at = now
            return False
        return now - self.at < ECHO_WINDOW_S


_first = _FirstSignal()


def _raise(signum: int, _frame: FrameType | None) -> None:
    if not _first.is_echo():
        raise Interrupted(signum)


def raise_on_signals() -> None:
    """Make SIGTERM (and SIGINT) raise `Interrupted` in the main thread; call once at start-up."""
    if threading.current_thread() is threading.main_thread():
        for signum in SIGNALS:
            signal.signal(signum, _raise)


class StopRequest:
    """Set by the first signal during training; read by the loop at each step boundary."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if _first.is_echo():
            return
        if self.signum is not None:
            raise Interrupted(signum)  # a second signal, not an echo of the first: stop now
        self.signum = signum


@contextlib.contextmanager
def stop_at_step_boundary() -> Iterator[StopRequest]:
    """While inside: a signal sets the request instead of raising (main thread only; elsewhere, as
    under a test runner's worker thread, signals keep their handlers)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {signum: signal.signal(signum, request._handle) for signum in SIGNALS}
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
