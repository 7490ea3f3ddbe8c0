"""Shared fixtures. No test touches ./mlflow.db, ./mlruns or ~/.cache: each runs in its own folder with its
own store and cache, and the session checks that the working tree gained nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from factories import CLIP_FRAMES, CLIP_SIZE
from PIL import Image

from seqtrack_mlflow.config import DataConfig, build_settings
from seqtrack_mlflow.datasets import synthetic
from seqtrack_mlflow.model.factory import build_model
from seqtrack_mlflow.train import checkpoints

# Two pytest-xdist workers share the two cores (pyproject's addopts): one thread each, in this process and
# in the processes the tests start, or their torch/OpenMP threads oversubscribe the cores (measured: no
# faster than one serial worker, at 1.6x the CPU time).
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def _migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite store with MLflow's schema migrations applied (slow once), copied per test."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    # The default experiment's artifact folder is fixed, as an absolute path, when the store is created:
    # under the current folder. Create it in the temporary folder, not in the checkout.
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        MlflowClient(f"sqlite:///{path}").search_experiments()
    finally:
        os.chdir(cwd)
    return path


ROOT = Path(__file__).resolve().parents[1]
CACHES = ("__pycache__", ".pytest_cache", ".ruff_cache", ".egg-info")
E2E = Path(__file__).resolve().parent / "e2e"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/e2e/ is `slow`, by its folder: the fast tier (`pytest`) leaves it out."""
    for item in items:
        if item.path.resolve().is_relative_to(E2E):
            item.add_marker(pytest.mark.slow)


def working_tree_entries() -> set[str] | None:
    """Untracked and ignored paths of the checkout (caches aside), or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    paths = {line[3:] for line in out.splitlines() if line[:2] in ("??", "!!")}
    return {p for p in paths if not any(c in p for c in CACHES)}


@pytest.fixture(scope="session", autouse=True)
def working_tree_stays_clean():
    """The suite writes nothing outside temporary folders: no ./mlruns, ./mlflow.db or ./outputs."""
    before = working_tree_entries()
    yield
    after = working_tree_entries()
    if before is not None and after is not None:
        new = sorted(after - before)
        assert not new, f"the tests wrote into the working tree: {new[:10]}"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # MLflow puts artifacts of a SQLite store's default experiment under ./mlruns of the current folder.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("SEQTRACK_CACHE", str(tmp_path / "cache"))
    for var in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "LASOT_ROOT"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture
def mlflow_uri(tmp_path: Path, _migrated_db: Path) -> str:
    """A fresh, ready MLflow SQLite store for this test (MLFLOW_TRACKING_URI points at it)."""
    import mlflow

    shutil.copy(_migrated_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()


# -- shared fixtures (their builders are in factories.py) ----------------------------------------------


@pytest.fixture(scope="module")
def model():
    """The tiny preset at 64-px crops with a 2-block encoder, seed 0, eval mode: a real tracker's model
    that tracks tens of frames in seconds on 2 shared CPU cores. One per test module."""
    from factories import tracker_model

    return tracker_model()


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a sound checkpoint file of `factories.tiny_checkpoint()`, to damage."""
    from factories import tiny_checkpoint

    from seqtrack_mlflow.train import checkpoints

    path = checkpoints.save(tiny_checkpoint(), tmp_path_factory.mktemp("good") / "epoch_1.ckpt")
    return path.read_bytes()


@pytest.fixture
def tiny_checkpoint_file(tmp_path: Path) -> Path:
    """`factories.tiny_checkpoint()` (the tiny model at 64-px crops, seed 3, airplane + bird synthetic
    data, untrained) saved as TMP/ckpt/epoch_1.ckpt."""
    from factories import tiny_checkpoint

    from seqtrack_mlflow.train import checkpoints

    return checkpoints.save(tiny_checkpoint(), tmp_path / "ckpt" / "epoch_1.ckpt")


# -- a user's clip and a tiny checkpoint, for the track tests (module-scoped: built once a module) ------


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny model at 64-px crops, saved as a training checkpoint."""
    data = DataConfig(
        source="synthetic", classes="airplane", synthetic_sequences=1, synthetic_frames=CLIP_FRAMES
    )
    settings = build_settings("tiny", {"search_size": 64, "template_size": 64}, {"seed": 3}, data)
    torch.manual_seed(0)
    ckpt = checkpoints.Checkpoint(
        epoch=1,
        settings=settings,
        model_state_dict=build_model(settings.model).state_dict(),
        optimizer_state_dict={},
        scheduler_state_dict={},
        loss=1.0,
        iou=0.0,
        dataset_info={"source": "synthetic", "classes": ["airplane"]},
        rng_state=checkpoints.rng_state(),
        mlflow_run_id="c" * 32,
    )
    return checkpoints.save(ckpt, tmp_path_factory.mktemp("ckpt") / "epoch_1.ckpt")


@pytest.fixture(scope="module")
def sequence(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[np.ndarray], str]:
    """One synthetic sequence's frames (RGB arrays) and its first ground-truth box as `x,y,w,h`."""
    (seq_dir,) = synthetic.generate_lasot(
        tmp_path_factory.mktemp("lasot"),
        ["airplane"],
        sequences_per_class=1,
        frames=CLIP_FRAMES,
        size=CLIP_SIZE,
    )
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((seq_dir / "img").glob("*.jpg"))]
    return frames, (seq_dir / "groundtruth.txt").read_text().splitlines()[0]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, sequence) -> Path:
    """The sequence as a real H.264 mp4 (yuv420p, 25 fps), as a user's clip would be."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = CLIP_SIZE[0], CLIP_SIZE[1], "yuv420p"
        for image in sequence[0]:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, sequence) -> Path:
    """The sequence as PNG frames of odd size named frame1, frame2, ... frame10: name order, with numbers
    compared as numbers (string order would put frame10 second)."""
    path = tmp_path_factory.mktemp("frames") / "shots"
    path.mkdir()
    for i, image in enumerate(sequence[0], start=1):
        Image.fromarray(image[:-1, :-1]).save(path / f"frame{i}.png")
    (path / "notes.txt").write_text("not a frame")
    return path
