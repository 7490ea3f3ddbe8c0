"""Small shared helpers for the end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
