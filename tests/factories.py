"""Shared builders for the tests: small settings and models, checkpoints (good and damaged), and files as
the official SeqTrack trainer writes them. Plain functions and constants, no fixtures (those live in the
conftest.py files) and no processes (tests/services.py starts those). Test modules import from here;
no test module imports another."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pickle
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import av
import numpy as np
import torch
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.config import DataConfig, ModelConfig, TrackerConfig, build_settings, preset, replace
from seqtrack_mlflow.datasets.synthetic_layouts import generate_coco, generate_got10k, generate_trackingnet
from seqtrack_mlflow.evaluation.tracker import SeqTrackTracker
from seqtrack_mlflow.model.factory import build_model
from seqtrack_mlflow.model.seqtrack import SeqTrack
from seqtrack_mlflow.tracking.outbox import PENDING_MANIFEST, PENDING_METRICS, PENDING_OPS
from seqtrack_mlflow.train import checkpoints
from seqtrack_mlflow.train.checkpoints import Checkpoint

ROOT = Path(__file__).resolve().parents[1]  # the checkout: MLproject, README.md, deploy/

# -- settings -----------------------------------------------------------------------------------------

# `mlflow run -e train` small but real: tiny preset geometry at 64-px crops, two short epochs of
# synthetic LaSOT.
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


def small_settings(epochs: int):
    """In-process training in seconds: the tiny preset at 32-px crops, 20 samples an epoch (resume,
    system metrics)."""
    data = DataConfig(source="synthetic", synthetic_sequences=4, synthetic_frames=30)
    model = {"search_size": 32, "template_size": 32}
    train = {
        "epochs": epochs,
        "samples_per_epoch": 20,
        "batch_size": 10,
        "seed": 8,
        "system_metrics": False,
        "log_every": 10,
        "device": "cpu",
    }
    return build_settings("tiny", model, train, data)


SWEEP_DATA = DataConfig(
    source="synthetic", classes="airplane,bird", synthetic_sequences=2, synthetic_frames=30
)
# Tiny preset at 32-px crops: 1-2 short epochs on CPU in seconds.
SWEEP_MODEL = {"search_size": 32, "template_size": 32}
SWEEP_TRAIN = {
    "seed": 8,
    "epochs": 2,
    "samples_per_epoch": 40,
    "batch_size": 8,
    "log_every": 40,
    "system_metrics": False,
    "device": "cpu",
}
SWEEP_TRACKER = TrackerConfig(max_frames=5)


def sweep_settings(**train):
    """The settings a sweep test starts from; TRAIN overrides the training settings."""
    return build_settings("tiny", SWEEP_MODEL, {**SWEEP_TRAIN, **train}, SWEEP_DATA)


# -- models -------------------------------------------------------------------------------------------

# Small but complete: every structural piece of SeqTrack (the FLOP model's and the cost estimate's tests).
SMALL = ModelConfig(
    encoder_dim=64,
    encoder_depth=2,
    encoder_heads=4,
    patch_size=8,
    template_size=32,
    search_size=48,
    decoder_dim=32,
    decoder_heads=4,
    decoder_ffn=64,
    bins=50,
    pretrained="none",
)


def tracker_model(size: int = 64, depth: int = 2) -> SeqTrack:
    """The tiny preset's structure with SIZE-px crops and a DEPTH-block encoder, seed 0, in eval mode:
    tracking many frames in seconds on 2 shared CPU cores."""
    torch.manual_seed(0)
    cfg = replace(preset("tiny")[0], template_size=size, search_size=size, encoder_depth=depth)
    return build_model(cfg).eval()


def tiny_model(seed: int = 0) -> SeqTrack:
    """The tiny preset as it stands (64-px templates, 128-px search), initialised with SEED, in eval mode."""
    torch.manual_seed(seed)
    return SeqTrack(preset("tiny")[0]).eval()


# -- our checkpoints ----------------------------------------------------------------------------------


def tiny_checkpoint(epoch: int = 1) -> Checkpoint:
    """A real checkpoint of the untrained tiny model at 64-px crops (seed 3, airplane + bird synthetic
    data), from training run "bbb...b"."""
    data = DataConfig(source="synthetic", classes="airplane,bird", synthetic_sequences=2, synthetic_frames=12)
    settings = build_settings("tiny", {"search_size": 64, "template_size": 64}, {"seed": 3}, data)
    torch.manual_seed(0)
    model = build_model(settings.model)
    return Checkpoint(
        epoch=epoch,
        settings=settings,
        model_state_dict=model.state_dict(),
        optimizer_state_dict={},
        scheduler_state_dict={},
        loss=1.0,
        iou=0.0,
        dataset_info={"source": "synthetic", "classes": ["airplane", "bird"]},
        rng_state=checkpoints.rng_state(),
        mlflow_run_id="b" * 32,
    )


class Payload:
    """What an attacker pickles: unpickling it would run `touch MARKER`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def flip_middle(data: bytes, count: int = 4) -> bytes:
    damaged = bytearray(data)
    mid = len(damaged) // 2
    damaged[mid : mid + count] = bytes(b ^ 0xFF for b in damaged[mid : mid + count])
    return bytes(damaged)


def write_fault(kind: str, good: bytes, folder: Path, marker: Path) -> tuple[Path, str]:
    """A damaged or foreign file at folder/epoch_1.ckpt, and what its refusal must say."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "epoch_1.ckpt"
    if kind == "flipped":
        path.write_bytes(flip_middle(good))
        return path, "do not match the SHA-256 digest"
    if kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
        return path, "not a PyTorch zip archive"
    if kind == "empty":
        path.write_bytes(b"")
        return path, "is empty"
    if kind == "text":
        path.write_text("epoch: 1\nweights: see attached\n")
        return path, "not a PyTorch zip archive"
    if kind == "pickle":  # a plain pickle with a __reduce__ payload
        path.write_bytes(pickle.dumps(Payload(marker)))
        return path, "not a PyTorch zip archive"
    if kind == "torch_pickle":  # the same payload inside a torch zip archive
        torch.save({"epoch": 1, "config": {}, "model_state_dict": Payload(marker)}, path)
        return path, "refused: it holds a reference to posix.system"
    if kind == "wrong_keys":
        torch.save({"state_dict": {"w": torch.ones(3)}, "epoch": 1}, path)
        return path, "not a training checkpoint (no config, model_state_dict)"
    raise AssertionError(kind)


FAULTS = ["flipped", "truncated", "empty", "text", "pickle", "torch_pickle", "wrong_keys"]


def checkpoint_cli_args(command: str, path: Path, out: Path) -> list[str]:
    """`evaluate --checkpoint PATH` or `train --resume PATH`, writing under OUT."""
    if command == "evaluate":
        return ["evaluate", "--checkpoint", str(path), "--device", "cpu", "--output_dir", str(out)]
    return [
        "train",
        "--resume",
        str(path),
        "--source",
        "synthetic",
        "--device",
        "cpu",
        "--system_metrics",
        "false",
        "--output_dir",
        str(out),
    ]


def assert_refused_in_one_line(code: int, stderr: str, stdout: str, path: Path, message: str) -> None:
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert code == 2, (code, stdout, stderr)
    assert len(errors) == 1, stderr
    assert str(path) in errors[0] and message in errors[0], errors[0]
    for text in (stdout, stderr):
        assert "Traceback" not in text and "weights_only=False" not in text and "weights_only" not in text


def all_runs() -> list:
    """Every run of every experiment in the current tracking store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiment_ids=ids) if ids else []


# -- official SeqTrack release files ------------------------------------------------------------------

STUB = "seqtrack_official_training_stub"  # stands for the official `lib.train.admin` modules
STUB_SOURCE = textwrap.dedent(
    """
    class EnvSettings:
        def __init__(self):
            self.workspace_dir = "/official/workspace"

    class Settings:
        def __init__(self):
            self.script_name, self.config_name = "seqtrack", "seqtrack_b256"
            self.env = EnvSettings()
            self.local_rank = 0

    class AverageMeter:
        def __init__(self, avg):
            self.avg, self.count = avg, 3

    class StatsDict(dict):
        pass

    class History(list):
        pass
    """
)


@contextlib.contextmanager
def official_training_code(tmp_path: Path) -> Iterator[ModuleType]:
    """A module importable only inside the block, like the official code at save but not at load."""
    folder = tmp_path / "official_code"
    folder.mkdir(exist_ok=True)
    (folder / f"{STUB}.py").write_text(STUB_SOURCE)
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(STUB)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(STUB, None)
        importlib.invalidate_caches()


def official_container(net: dict, stub: ModuleType, **extra: object) -> dict:
    """The dict the official trainer saves (`BaseTrainer.save_checkpoint`), with its objects."""
    stats = stub.StatsDict(train=stub.AverageMeter(0.5))
    stats["history"] = stub.History([stub.AverageMeter(1.0), 2])
    container = {
        "epoch": 500,
        "actor_type": "SeqTrackActor",
        "net_type": "SEQTRACK",
        "net": net,
        "net_info": None,
        "constructor": None,
        "optimizer": {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 1e-5}]},
        "stats": stats,
        "settings": stub.Settings(),
    }
    return {**container, **extra}


# -- a run folder left by a run that ended offline (pending ops for `sync`) --------------------------

SECRET = "the secret outside the run folder"


def artifacts(run_id: str, path: str | None = None) -> set[str]:
    """Every artifact file of the run (recursively)."""
    found = set()
    for info in MlflowClient().list_artifacts(run_id, path):
        found |= artifacts(run_id, info.path) if info.is_dir else {info.path}
    return found


def outbox(tmp_path: Path, ops: list[Any], *, manifest: dict | None = None) -> tuple[str, Path]:
    """A real run in the store and its folder holding `ops` (dicts as JSON lines, strings as written),
    one metric point and a manifest; beside it, a folder `elsewhere/` with a secret file."""
    run_id = MlflowClient().create_run("0").info.run_id
    folder = tmp_path / "outputs" / run_id
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "epoch_1.ckpt").write_bytes(b"weights")
    (folder / "training_log.txt").write_text("Epoch 1 : 10 / 10")
    (tmp_path / "elsewhere").mkdir(exist_ok=True)
    (tmp_path / "elsewhere" / "secret.txt").write_text(SECRET)
    lines = [op if isinstance(op, str) else json.dumps(op) for op in ops]
    (folder / PENDING_OPS).write_text("".join(line + "\n" for line in lines))
    (folder / PENDING_METRICS).write_text(
        json.dumps({"key": "loss", "value": 0.5, "timestamp": 1, "step": 10})
    )
    record = {"run_id": run_id, "tracking_uri": "sqlite:///nowhere.db", "status": "FINISHED", "end_time": 5}
    (folder / PENDING_MANIFEST).write_text(json.dumps({**record, **(manifest or {})}))
    return run_id, folder


def artifact(path: str, dest: str | None = None) -> dict[str, Any]:
    return {"op": "artifact", "path": path, "artifact_path": dest}


# -- a user's clip for the track tests: frames, an H.264 file, evaluate's boxes on it ---------------

CLIP_FRAMES = 10  # a user's clip in the track tests
CLIP_SIZE = (162, 122)  # even: the test's own H.264 file needs it


def reference_boxes(ckpt: Path, frames: list[np.ndarray], box: str) -> np.ndarray:
    """Evaluate's tracker, run directly on the frames: what boxes.txt must hold."""
    loaded = checkpoints.load(ckpt)
    tracker = SeqTrackTracker.from_weights(loaded.settings.model, loaded.model_state_dict, TrackerConfig())
    first = np.array([float(v) for v in box.split(",")])
    tracker.initialize(frames[0], first)
    return np.array([first] + [tracker.track(f)[0] for f in frames[1:]])


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


MIX_RATIOS = (1.0, 2.0, 1.0, 4.0)  # lasot, got10k, trackingnet, coco


def mix_data(root: Path, **more) -> DataConfig:
    """The four-dataset synthetic mix under `root` (generated once per folder)."""
    if not root.exists():
        generate_got10k(root / "got10k", train=3, val=1, test=1, frames=24, size=(96, 72), seed=1)
        generate_trackingnet(root / "tn", chunks=(0, 1), videos=2, test=1, frames=24, size=(96, 72), seed=1)
        generate_coco(root / "coco", images=3, size=(160, 120), seed=1)
    return DataConfig(
        source="synthetic", classes="airplane", synthetic_sequences=3, synthetic_frames=24,
        synthetic_size="96x72", datasets="official", dataset_ratios=",".join(f"{r:g}" for r in MIX_RATIOS),
        got10k_root=str(root / "got10k"), trackingnet_root=str(root / "tn"), coco_root=str(root / "coco"),
        **more,
    )  # fmt: skip
