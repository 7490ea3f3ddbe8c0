"""The team set-up (tests/e2e/test_team_server.py): PostgreSQL from the machine's own binaries, an S3
endpoint (moto in server mode) and `mlflow server --serve-artifacts` in front of both, all on 127.0.0.1.
Each raises services.Unavailable (or fails the test) when it cannot start here."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from services import Unavailable, free_port, mlflow_server_command, stop_process, wait_http

PG_USER = PG_PASSWORD = PG_DB = "mlflow"
S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION = "seqtrack-test", "seqtrack-test-secret", "us-east-1"


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
        if not wait_http(url, proc, timeout=60):
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
    if not wait_http(f"http://127.0.0.1:{port}/health", proc, timeout=180):
        stop_process(proc)
        pytest.fail("mlflow server did not start: " + log.read_text()[-3000:])
    return proc
