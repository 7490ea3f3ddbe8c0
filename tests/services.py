"""Processes and servers for the tests, started as a user starts them: the CLI, `mlflow run`, `mlflow
artifacts download`, torchrun (one node or several), `mlflow server`, a tmpfs mount; and a fake Hugging
Face hub on 127.0.0.1. The team set-up's PostgreSQL and S3 endpoint are in team_services.py."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NoReturn

import pytest
from factories import ROOT


def mlflow_run(entry: str, params: dict[str, str], env: dict[str, str] | None = None, timeout: int = 600):
    """`mlflow run . --env-manager local -e ENTRY -P k=v ...` as a user types it."""
    cmd = [sys.executable, "-m", "mlflow", "run", str(ROOT), "--env-manager", "local", "-e", entry]
    for k, v in params.items():
        cmd += ["-P", f"{k}={v}"]
    return subprocess.run(
        cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout, check=False
    )


def cli(*args: str, env: dict[str, str] | None = None, timeout: int = 300):
    return subprocess.run(
        [sys.executable, "-m", "seqtrack_mlflow.cli", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def download_artifact(run_id: str, artifact: str, dst: Path, tracking_uri: str) -> Path:
    """`mlflow artifacts download -r RUN -a PATH -d DIR` as a user types it; returns DIR/<basename>."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "artifacts",
            "download",
            "-r",
            run_id,
            "-a",
            artifact,
            "-d",
            str(dst),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri},
    )
    return dst / Path(artifact).name


def torchrun(nproc: int, port: int, *cli_args: str, timeout: int = 300):
    """`torchrun --nproc_per_node N -m seqtrack_mlflow.cli ...` with one thread per process."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(nproc),
        "--master_port",
        str(port),
        "-m",
        "seqtrack_mlflow.cli",
        *cli_args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def torchrun_nodes(
    port: int, nodes: list[tuple[list[str], dict[str, str]]], log_dir: Path, timeout: float = 240
) -> list[tuple[int, str]]:
    """One `torchrun --nnodes N --node_rank R --nproc_per_node 1` launch per entry of `nodes` (its cli
    arguments and extra environment), as on N machines that meet at 127.0.0.1:PORT (static rendezvous:
    node_rank 0 hosts the store and its process is global rank 0). Returns each launch's (exit status,
    output). Every wait is bounded: a launch still running after `timeout` seconds fails the test, and
    in any case every launch and the workers it started are killed before returning."""
    import contextlib
    import signal

    import psutil

    procs, logs = [], []
    try:
        for rank, (cli_args, env) in enumerate(nodes):
            cmd = [
                sys.executable, "-m", "torch.distributed.run", "--nnodes", str(len(nodes)), "--node_rank",
                str(rank), "--nproc_per_node", "1", "--rdzv_backend", "static", "--rdzv_endpoint",
                f"127.0.0.1:{port}", "--rdzv_conf", "timeout=60", "-m", "seqtrack_mlflow.cli", *cli_args,
            ]  # fmt: skip
            logs.append(log_dir / f"node{rank}.log")
            with open(logs[-1], "w") as out:
                procs.append(
                    subprocess.Popen(
                        cmd,
                        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 1))
            except subprocess.TimeoutExpired:
                tails = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in logs)
                pytest.fail(f"a torchrun node still ran after {timeout}s:\n{tails}")
        return [(p.returncode, log.read_text()) for p, log in zip(procs, logs, strict=True)]
    finally:
        for proc in procs:
            if proc.poll() is None:
                try:  # the workers run in sessions of their own: kill them by id, then the agent
                    tree = psutil.Process(proc.pid).children(recursive=True)
                except psutil.Error:
                    tree = []
                for child in tree:
                    with contextlib.suppress(psutil.Error):
                        child.kill()
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlflow_server_command(port: int, backend_store_uri: str, artifacts_destination: str) -> list[str]:
    """`mlflow server` on 127.0.0.1:PORT serving artifacts from ARTIFACTS_DESTINATION, one worker."""
    return [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", backend_store_uri, "--artifacts-destination", artifacts_destination,
        "--serve-artifacts", "--workers", "1",
    ]  # fmt: skip


def start_mlflow_server(home: Path, port: int, log_name: str = "server.log") -> subprocess.Popen:
    """A real `mlflow server` on 127.0.0.1:PORT (SQLite backend and served artifacts under HOME), ready:
    its /health answers. The same HOME and PORT give a restarted server the same store."""
    home.mkdir(exist_ok=True)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        mlflow_server_command(port, f"sqlite:///{home / 'mlflow.db'}", str(home / "artifacts")),
        cwd=home,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(home / log_name, "w"),  # noqa: SIM115 - lives as long as the server
    )
    if not wait_http(f"http://127.0.0.1:{port}/health", proc, timeout=120):
        proc.kill()
        pytest.fail("mlflow server did not start: " + (home / log_name).read_text()[-2000:])
    return proc


def stop_mlflow_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=20)


def wait_http(url: str, proc: subprocess.Popen, timeout: float) -> bool:
    """True once URL answers with any HTTP status; False when PROC ends or TIMEOUT seconds pass."""
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # it answered
        except OSError:
            time.sleep(0.3)
    return False


def stop_process(proc: subprocess.Popen) -> None:
    """Stop a server started with `start_new_session=True`: SIGTERM, then SIGKILL to its process group."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)


def start_model_server(model_uri: str, port: int, log: Path, timeout: float = 180) -> subprocess.Popen:
    """`mlflow models serve -m MODEL_URI --env-manager local -h 127.0.0.1 -p PORT` as a user types it
    (the store: this process's MLFLOW_TRACKING_URI), ready: its /ping answers. In a session of its own:
    MLflow execs uvicorn in a child shell, so `stop_process_group` stops them all."""
    cmd = [
        sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
        "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),  # noqa: SIM115 - lives as long as the server
        start_new_session=True,
    )
    if not wait_http(f"http://127.0.0.1:{port}/ping", proc, timeout=timeout):
        stop_process_group(proc)
        pytest.fail(f"mlflow models serve did not answer within {timeout:.0f} s: {log.read_text()[-2000:]}")
    return proc


def stop_process_group(proc: subprocess.Popen) -> None:
    """Stop PROC (started with `start_new_session=True`) and every process of its group: SIGTERM, then
    SIGKILL for whatever is left after at most 20 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=20)


def mount_tmpfs(where: Path, size: int) -> bool:
    """Mount a real tmpfs of SIZE bytes on WHERE; False where that cannot be done (needs root and mount
    rights). Unmount with `umount -l WHERE`."""
    if os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    return done.returncode == 0


class Unavailable(Exception):
    """A component of a test's set-up cannot start on this machine; the message says why."""


def skip_or_fail_on_ci(reason: str) -> NoReturn:
    """Skip with REASON; on CI (`CI=true`) fail with it instead: CI must never pass without the test."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: this test may not be skipped on CI)", pytrace=False)
    pytest.skip(reason)


# -- a Hugging Face hub on 127.0.0.1 ----------------------------------------------------------------

COMMIT = "0123456789abcdef0123456789abcdef01234567"
PREFIX = "/datasets/l-lt/LaSOT/resolve/"


class FakeHub:
    """A thread-served Hugging Face file endpoint with a request log: what `hf_hub_download` uses, HEAD
    and GET of `/datasets/l-lt/LaSOT/resolve/<revision>/<file>` with X-Repo-Commit, ETag and
    Content-Length (Range requests honoured, X-Error-Code: EntryNotFound for a missing file)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: Counter[tuple[str, str]] = Counter()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def _serve(self, with_body: bool) -> None:
                if not self.path.startswith(PREFIX):
                    self.send_response(404)
                    self.send_header("X-Error-Code", "RepoNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                _revision, _, name = self.path[len(PREFIX) :].partition("/")
                hub.requests[(self.command, name)] += 1
                data = hub.files.get(name)
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Repo-Commit", COMMIT)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                if with_body and self.headers.get("Range", "").startswith("bytes="):
                    start = int(self.headers["Range"][6:].split("-")[0])
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
                self._serve(with_body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._serve(with_body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def gets(self, name: str) -> int:
        return self.requests[("GET", name)]

    def close(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()


def point_hub_at(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str) -> None:
    """Make huggingface_hub fetch from URL (a FakeHub) for this test, with its cache under TMP_PATH."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_ENDPOINT", url)
    # huggingface_hub reads HF_ENDPOINT at import into ENDPOINT and the URL template: patch both alike.
    monkeypatch.setattr(hf_constants, "ENDPOINT", url)
    template = url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
