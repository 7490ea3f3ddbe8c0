"""A stand-in for MlflowClient for the fast tracking tests: one run's params, tags and metrics in memory,
every call recorded in order, and switches for an unreachable store or a store that refuses a call."""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any


class StubClient:
    def __init__(self) -> None:
        self.down = False  # every call raises, as a stopped server's would
        self.refuse: dict[str, BaseException] = {}  # method name -> error raised once while up
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.metrics: list[tuple[str, float, int]] = []  # (key, value, step) as received
        self.sent: list[tuple[Any, ...]] = []  # every successful write, in order
        self.status: str | None = None
        self.artifact_uri = "s3://stub/artifacts"  # a remote artifact store: local copies are kept
        self.after_read: Callable[[], None] | None = None  # runs once get_run has read (concurrent claims)
        self._lock = threading.Lock()

    def _answer(self, method: str) -> None:
        if self.down:
            raise ConnectionError(f"HTTPConnectionPool: Max retries exceeded ({method})\n  details")
        if method in self.refuse:
            raise self.refuse.pop(method)

    def get_run(self, run_id: str) -> SimpleNamespace:
        self._answer("get_run")
        with self._lock:
            data = SimpleNamespace(params=dict(self.params), tags=dict(self.tags))
        if self.after_read is not None:
            self.after_read()
        return SimpleNamespace(
            data=data, info=SimpleNamespace(run_id=run_id, status=self.status, artifact_uri=self.artifact_uri)
        )

    def log_batch(self, run_id: str, metrics=(), params=(), tags=()) -> None:
        self._answer("log_batch")
        with self._lock:
            for m in metrics:
                self.metrics.append((m.key, m.value, m.step))
            if metrics:
                self.sent.append(("metrics", len(metrics)))
            for p in params:
                assert p.key not in self.params, f"MLflow refuses to log param {p.key} twice"
                self.params[p.key] = p.value
            if params:
                self.sent.append(("params", tuple(sorted(p.key for p in params))))
            for t in tags:
                self.tags[t.key] = t.value
            if tags:
                self.sent.append(("tags", tuple(sorted(t.key for t in tags))))

    def log_artifact(self, run_id: str, path: str, artifact_path: str | None = None) -> None:
        self._answer("log_artifact")
        self.sent.append(("artifact", path, artifact_path))

    def log_artifacts(self, run_id: str, path: str, artifact_path: str | None = None) -> None:
        self._answer("log_artifacts")
        self.sent.append(("artifacts", path, artifact_path))

    def log_dict(self, run_id: str, values: dict, artifact_file: str) -> None:
        self._answer("log_dict")
        self.sent.append(("dict", artifact_file))

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self._answer("set_tag")
        with self._lock:
            self.tags[key] = value
            self.sent.append(("set_tag", key))

    def delete_tag(self, run_id: str, key: str) -> None:
        self._answer("delete_tag")
        with self._lock:
            del self.tags[key]
            self.sent.append(("delete_tag", key))

    def set_terminated(self, run_id: str, status: str, end_time: int | None = None) -> None:
        self._answer("set_terminated")
        self.status = status
        self.sent.append(("terminated", status))
