"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def server(tmp_path: Path):
    """A real `mlflow server` for one test (SQLite backend, served artifacts): its URL."""
    from services import free_port, start_mlflow_server, stop_mlflow_server

    port = free_port()
    proc = start_mlflow_server(tmp_path / "server", port)
    yield f"http://127.0.0.1:{port}"
    stop_mlflow_server(proc)
