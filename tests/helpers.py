"""Small shared helpers for the end-to-end tests."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Small but real: tiny preset geometry at 64-px crops, two short epochs of synthetic LaSOT.
FAST_TRAIN = {
    "seed": "8",
    "source": "synthetic",
    "search_size": "64",
    "template_size": "64",
    "epochs": "2",
    "samples_per_epoch": "100",
    "batch_size": "10",
    "system_metrics": "false",
    "synthetic_sequences": "4",
    "synthetic_frames": "40",
}


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
    if not _wait_http(f"http://127.0.0.1:{port}/health", proc, timeout=120):
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


@pytest.fixture(name="server")
def server_fixture(tmp_path: Path):
    """`server`: a real `mlflow server` for one test, its URL (`from helpers import server_fixture`)."""
    port = free_port()
    proc = start_mlflow_server(tmp_path / "server", port)
    yield f"http://127.0.0.1:{port}"
    stop_mlflow_server(proc)


# The team set-up (tests/test_team_server.py): PostgreSQL from the machine's own binaries, an S3 endpoint
# (moto in server mode) and `mlflow server --serve-artifacts` in front of both, all on 127.0.0.1.

PG_USER = PG_PASSWORD = PG_DB = "mlflow"
S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION = "seqtrack-test", "seqtrack-test-secret", "us-east-1"


class Unavailable(Exception):
    """A component of a test's set-up cannot start on this machine; the message says why."""


def skip_or_fail_on_ci(reason: str) -> NoReturn:
    """Skip with REASON; on CI (`CI=true`) fail with it instead: CI must never pass without the test."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: this test may not be skipped on CI)", pytrace=False)
    pytest.skip(reason)


def _postgres_driver():
    """SQLAlchemy, once the driver it uses for `postgresql://` URIs imports (psycopg with SQLAlchemy 2.1,
    psycopg2 before): what `mlflow server` needs for such a backend store."""
    import sqlalchemy

    try:
        sqlalchemy.create_engine("postgresql://probe@127.0.0.1/probe").dispose()  # imports, connects not
    except ImportError as exc:
        raise Unavailable(
            f"{exc.name}, SQLAlchemy's PostgreSQL driver, is missing: pip install -e '.[server]'"
        ) from None
    return sqlalchemy


def _postgres_program(name: str) -> str:
    found = shutil.which(name) or max(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), default=None)
    if not found:
        raise Unavailable(f"PostgreSQL's `{name}` is not on PATH (install PostgreSQL 15: initdb, pg_ctl)")
    return found


def _as_postgres_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run CMD as the `postgres` user; otherwise as is."""
    if os.geteuid() != 0:
        return cmd
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise Unavailable("running as root and no `postgres` user exists to run PostgreSQL as") from None
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *cmd]
    return ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(cmd)]


def _run_as_postgres(cmd: list[str], cwd: Path, timeout: int) -> None:
    try:
        proc = subprocess.run(
            _as_postgres_user(cmd), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"`{Path(cmd[0]).name}` failed: {exc}") from None
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()[-1500:]
        raise Unavailable(f"`{Path(cmd[0]).name}` exited with {proc.returncode}: {out}")


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A throw-away PostgreSQL cluster on 127.0.0.1 (a free port, password authentication over TCP) with
    an empty database; yields its SQLAlchemy URI `postgresql://mlflow:mlflow@127.0.0.1:PORT/mlflow`, then
    stops the server and deletes the cluster. Raises Unavailable when it cannot start here.

    As root (CI, containers) the cluster belongs to the `postgres` user and lives in a folder of its own
    under the system's temporary folder: pytest's folders are root's (mode 0700), out of that user's reach.
    """
    sqlalchemy = _postgres_driver()
    initdb, pg_ctl = _postgres_program("initdb"), _postgres_program("pg_ctl")
    home = Path(tempfile.mkdtemp(prefix="seqtrack-pg-"))
    data, log = home / "data", home / "postgres.log"
    started = False
    try:
        (home / "pwfile").write_text(PG_PASSWORD + "\n")
        if os.geteuid() == 0:
            with contextlib.suppress(KeyError):  # no such user: _as_postgres_user says so
                uid, gid = pwd.getpwnam("postgres")[2:4]
                for path in (home, home / "pwfile"):
                    os.chown(path, uid, gid)
        _run_as_postgres(
            [
                initdb,
                "-D",
                str(data),
                "-U",
                PG_USER,
                f"--pwfile={home / 'pwfile'}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            cwd=home,
            timeout=120,
        )
        port = free_port()
        options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={home}"
        options += " -c fsync=off -c full_page_writes=off"  # a throw-away cluster
        started = True  # from here on, stop it whatever happens
        try:
            _run_as_postgres(
                [pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start"],
                cwd=home,
                timeout=90,
            )
        except Unavailable as exc:
            tail = log.read_text()[-1500:] if log.exists() else ""
            raise Unavailable(f"{exc}\n{tail}") from None
        uri = f"postgresql://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{port}"
        engine = sqlalchemy.create_engine(f"{uri}/postgres", isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text(f"CREATE DATABASE {PG_DB}"))
        finally:
            engine.dispose()
        yield f"{uri}/{PG_DB}"
    finally:
        if started:
            _stop_postgres(pg_ctl, data, home)
        shutil.rmtree(home, ignore_errors=True)


def _stop_postgres(pg_ctl: str, data: Path, home: Path) -> None:
    try:
        _run_as_postgres(
            [pg_ctl, "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop"], cwd=home, timeout=60
        )
    except Unavailable:
        pid_file = data / "postmaster.pid"  # the server this helper started: kill it by its own pid
        if pid_file.exists():
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> bool:
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


def s3_client(endpoint: str):
    """A boto3 S3 client of the test endpoint (the test's own credentials; training clients have none)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
        region_name=S3_REGION,
    )


@contextlib.contextmanager
def s3_endpoint(home: Path) -> Iterator[str]:
    """moto's S3 in server mode on 127.0.0.1 (a free port), in-memory; yields its URL, then stops it.
    Raises Unavailable when it cannot start here."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError as exc:
        raise Unavailable(f"{exc.name} is not installed: pip install -e '.[server]'") from None
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = home / "moto.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            cwd=home,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        if not _wait_http(url, proc, timeout=60):
            raise Unavailable(f"moto server did not answer on {url}: {log.read_text()[-1500:]}")
        yield url
    finally:
        stop_process(proc)


def start_team_mlflow_server(
    home: Path, port: int, backend_store_uri: str, artifacts_destination: str, s3_endpoint_url: str
) -> subprocess.Popen:
    """`mlflow server --backend-store-uri BACKEND --artifacts-destination s3://... --serve-artifacts` on
    127.0.0.1:PORT, ready (its /health answers). The S3 endpoint and credentials are in the SERVER's
    environment only: clients upload and download through the server."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))}
    env.update(
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        MLFLOW_S3_ENDPOINT_URL=s3_endpoint_url,
        AWS_ACCESS_KEY_ID=S3_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=S3_SECRET_KEY,
        AWS_DEFAULT_REGION=S3_REGION,
    )
    log = home / "server.log"
    cmd = mlflow_server_command(port, backend_store_uri, artifacts_destination)
    with open(log, "w") as err:
        proc = subprocess.Popen(
            cmd, cwd=home, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
    if not _wait_http(f"http://127.0.0.1:{port}/health", proc, timeout=180):
        stop_process(proc)
        pytest.fail("mlflow server did not start: " + log.read_text()[-3000:])
    return proc
