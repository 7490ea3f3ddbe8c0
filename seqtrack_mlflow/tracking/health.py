"""Tracking-server outages: fail fast, say so once, notice when the server is back.

MLflow retries a failed HTTP request 7 times with exponential backoff (about 4 minutes) and waits up to
120 s for each answer, so a training step that logs to a stopped server hangs for minutes and then
raises. The project's calls fail fast instead (`fail_fast_http`; values the user set win) and a
`Health` records whether the store answers: one warning line when it is lost, one when it is back.
What could not be sent meanwhile is the `RunLogger`'s to keep (and, at the end, the outbox's).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

from seqtrack_mlflow.messages import first_line
from seqtrack_mlflow.tracking.store import store_uri

FAIL_FAST_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",  # MLflow: 7 (~4 min of backoff)
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # MLflow: 2
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",  # MLflow: 1.0
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",  # s per request (MLflow: 120); a large checkpoint needs time
}
METRIC_BUFFER_POINTS = 100_000  # metric points kept while the server is away; past it the oldest go


def _env_seconds(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def probe_every_s() -> float:
    """While the server is away, it is asked again this often (SEQTRACK_TRACKING_PROBE_S, default 15)."""
    return _env_seconds("SEQTRACK_TRACKING_PROBE_S", 15.0)


def final_wait_s() -> float:
    """At the end of a run the server is awaited this long (SEQTRACK_TRACKING_FINAL_WAIT_S, default 60)."""
    return _env_seconds("SEQTRACK_TRACKING_FINAL_WAIT_S", 60.0)


def fail_fast_http() -> None:
    """Let the project's MLflow HTTP calls fail within seconds, not minutes (the user's values win)."""
    for key, value in FAIL_FAST_HTTP.items():
        os.environ.setdefault(key, value)


def say(line: str) -> None:
    """A status line for the user, on stderr (stdout carries the step's own output)."""
    print(line, file=sys.stderr, flush=True)


class Health:
    """Whether this process's tracking store answers: one line when it is lost, one when it is back.

    One per process (`HEALTH`), shared by every RunLogger (a pipeline's parent and nested runs talk to
    one store); tests give a logger a fresh one. `store`: names the store in the two lines."""

    def __init__(self, store: Callable[[], str] = store_uri) -> None:
        self.online = True
        self.lost_at = 0.0
        self._store = store
        self._next_probe = 0.0
        self._lock = threading.Lock()

    def lost(self, exc: BaseException) -> None:
        """The store did not answer: offline (the warning line only on the way from online)."""
        with self._lock:
            if not self.online:
                return
            self.online = False
            self.lost_at = time.time()
            self._next_probe = self.lost_at + probe_every_s()
        say(
            f"warning: the tracking server {self._store()} is unreachable ({first_line(exc)}): training goes "
            f"on; metrics (the last {METRIC_BUFFER_POINTS:,} points) and artifacts are kept locally and "
            "sent when it is back"
        )

    def usable(self, probe: Callable[[], bool], *, every: float | None = None) -> bool:
        """Online, or back after a probe (at most one every `probe_every_s()` seconds)."""
        with self._lock:
            if self.online:
                return True
            if time.time() < self._next_probe:
                return False
            self._next_probe = time.time() + (every if every is not None else probe_every_s())
        if not probe():
            return False
        with self._lock:
            if self.online:
                return True
            self.online = True
            away = time.time() - self.lost_at
        say(f"the tracking server {self._store()} is back after {away:.0f} s: sending what was kept")
        return True

    def probe_now(self) -> None:
        """Let the next `usable` probe at once (the end of a run does not wait for the schedule)."""
        with self._lock:
            self._next_probe = 0.0


HEALTH = Health()  # this process's store
