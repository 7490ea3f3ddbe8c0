"""Hostile checkpoint files, built byte for byte (tests/hostile_files.py), against both readers: the
restricted reader of official release files (`read_official`, `is_official_checkpoint`) and ours
(`checkpoints.load`, which ends in `torch.load(weights_only=True)`), and through `evaluate` itself.

Each is refused in one line naming the file, before any unpickler or inflater sees the hostile part:
a dict key nested 200,000 tuples deep (segfaulted both readers), a memo bomb (`LONG_BINPUT 2**27`:
+2 GiB for a 9-byte pickle), bzip2/lzma/deflate bombs (a data.pkl inflating to 256 MiB - 1 GiB, read
whole, twice), overlapping zip members (1 MB read as 424 MB), and a small training checkpoint whose
config claims ViT-L (built the 1.2 GB model before "weights do not fit"). A valid official file whose
200 tensors view one storage loads with the storage read once (it took 1.8 GB). The memory cases
measure peak RSS in a subprocess, against the baseline of that process before the read.
"""

from __future__ import annotations

import json
import pickle
import struct
import subprocess
import sys
import textwrap
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from hostile_files import (
    compression_bomb,
    memo_bomb_pickle,
    nested_key_pickle,
    overlapping_storages,
    shared_storage_official,
    with_pickle,
)
from services import cli

from seqtrack_mlflow.cli import main
from seqtrack_mlflow.config import DataConfig, build_settings
from seqtrack_mlflow.model import pickle_scan, torch_zip
from seqtrack_mlflow.model.factory import (
    OfficialCheckpointError,
    is_official_checkpoint,
    load_trained_weights,
    official_preset_shapes,
    read_official,
)
from seqtrack_mlflow.model.seqtrack import SeqTrack
from seqtrack_mlflow.train import checkpoints
from seqtrack_mlflow.train.checkpoints import CheckpointError

MIB = 1 << 20
RSS_BOUND_MB = 200  # above the subprocess's own baseline; every bomb here used 420 MB to 2 GB before


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file as torch.save writes it: the layout (version, byteorder, ...) every hostile file keeps."""
    path = tmp_path_factory.mktemp("template") / "archive.pt"
    torch.save({"x": torch.ones(2)}, path)
    return path


def assert_one_line(exc: pytest.ExceptionInfo, path: Path, *needles: str) -> str:
    text = str(exc.value)
    assert "\n" not in text and str(path) in text, text
    for needle in needles:
        assert needle in text, text
    return text


# Runs the readers on one file in a fresh interpreter and reports each outcome and the peak RSS above
# the interpreter's own baseline (measured after the imports, before the first read).
PROBE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from seqtrack_mlflow.model import factory
    from seqtrack_mlflow.train import checkpoints

    READERS = {
        "official": lambda p: factory.read_official(p),
        "official_b256": lambda p: factory.read_official(p, "b256"),
        "is_official": lambda p: factory.is_official_checkpoint(p),
        "ours": lambda p: checkpoints.load(p),
        "evaluate": lambda p: factory.load_trained_weights(p, None),
    }
    def peak():  # VmHWM, this process's own peak in MB (ru_maxrss carries the parent's across fork + exec)
        status = open("/proc/self/status").read().splitlines()
        return int(next(line.split()[1] for line in status if line.startswith("VmHWM:"))) / 1024
    base, report = peak(), {}
    for arg in sys.argv[2:]:
        for name in sys.argv[1].split(","):
            try:
                result = READERS[name](Path(arg))
                report[f"{Path(arg).name} {name}"] = "ok" if not isinstance(result, bool) else str(result)
            except Exception as exc:
                report[f"{Path(arg).name} {name}"] = f"{type(exc).__name__}: {exc}"
    report["peak_mb"] = peak() - base
    print(json.dumps(report))
    """
)


def probe(readers: str, *paths: Path) -> dict[str, str | float]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, readers, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])  # -11: a segfault
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- case 5: nesting


@pytest.mark.parametrize("marks", [True, False], ids=["mark-tuple", "tuple1-chain"])
def test_deeply_nested_keys_are_refused_before_unpickling(template: Path, tmp_path: Path, marks: bool):
    """20,000 deep: RecursionError while building the error message before; 200,000: a segfault."""
    path = with_pickle(template, nested_key_pickle(20_000, marks), tmp_path / "nested.pt")
    needle = f"nests containers more than {pickle_scan.MAX_DEPTH} deep"
    with pytest.raises(OfficialCheckpointError) as official:
        read_official(path)
    assert_one_line(official, path, needle)
    assert not is_official_checkpoint(path)
    with pytest.raises(CheckpointError) as ours:
        checkpoints.load(path)
    assert_one_line(ours, path, needle, "refused before unpickling")


@pytest.mark.slow  # a real `evaluate` process (~15 s of imports and the scan): slow tier
def test_evaluate_refuses_a_200k_deep_key_with_exit_2(template: Path, tmp_path: Path):
    """The file that segfaulted `evaluate` (exit 139), through the real CLI."""
    path = with_pickle(template, nested_key_pickle(200_000), tmp_path / "epoch_1.ckpt")
    assert path.stat().st_size > 400_000
    out = tmp_path / "outputs"
    proc = cli("evaluate", "--checkpoint", str(path), "--device", "cpu", "--output_dir", str(out))
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(errors) == 1 and str(path) in errors[0] and "nests containers" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not out.exists()


# ---------------------------------------------------------------- case 6: memory bombs


@pytest.fixture(scope="module")
def bombs(template: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bombs")
    return {
        "memo": with_pickle(template, memo_bomb_pickle(), folder / "memo.pt"),
        "deflate": compression_bomb(template, folder / "deflate.pt", zipfile.ZIP_DEFLATED, 1024 * MIB),
        "deflate-lying": compression_bomb(
            template, folder / "deflate-lying.pt", zipfile.ZIP_DEFLATED, 1024 * MIB, honest=False
        ),
        "bzip2": compression_bomb(template, folder / "bzip2.pt", zipfile.ZIP_BZIP2, 256 * MIB),
        "lzma": compression_bomb(template, folder / "lzma.pt", zipfile.ZIP_LZMA, 256 * MIB),
        "overlap": overlapping_storages(template, folder / "overlap.pt", 400, MIB),
    }


BOMB_REFUSALS = {
    "memo": "puts memo index 134217728 past the 2 opcodes before it",
    "deflate": "would inflate",
    "bzip2": "is compressed with bzip2",
    "lzma": "is compressed with lzma",
    "overlap": "overlaps the next member",
}


def test_memory_bombs_are_refused_near_the_baseline(bombs: dict[str, Path]):
    """Every bomb through every reader in one interpreter: its peak RSS stays near its baseline."""
    assert all(bombs[k].stat().st_size < 1_100_000 for k in ("memo", "deflate", "bzip2", "lzma", "overlap"))
    report = probe("official,is_official,ours,evaluate", *bombs.values())
    assert report.pop("peak_mb") < RSS_BOUND_MB, report
    for kind, needle in BOMB_REFUSALS.items():
        name = bombs[kind].name
        assert report[f"{name} is_official"] == "False"
        assert report[f"{name} official"].startswith("OfficialCheckpointError: cannot read"), report
        for reader in ("official", "ours", "evaluate"):
            assert needle in report[f"{name} {reader}"] and str(bombs[kind]) in report[f"{name} {reader}"]
            assert "\n" not in report[f"{name} {reader}"]
    # The lying directory declares data.pkl's 4 bytes: exactly those are read (an empty dict).
    lying = bombs["deflate-lying"].name
    assert "not an official SeqTrack checkpoint" in report[f"{lying} official"]
    assert "not a training checkpoint" in report[f"{lying} ours"]


def test_a_reduce_that_copies_one_list_many_times_is_refused(template: Path, tmp_path: Path):
    """`set(big)` called 2,000 times through REDUCE: 6 bytes of pickle per 4 MB copy of 100,000 ints."""
    big = b"]q\x00(" + b"".join(b"J" + struct.pack("<i", i) for i in range(100_000)) + b"e"
    copies = b"]q\x01(" + b"h\x02h\x00\x85R" * 2_000 + b"e"
    data = b"\x80\x02" + big + b"0cbuiltins\nset\nq\x02" + b"0" + copies + b"."
    path = with_pickle(template, data, tmp_path / "copies.pt")
    with pytest.raises(OfficialCheckpointError) as exc:
        read_official(path)
    limit = pickle_scan.MAX_OBJECT_BYTES >> 20
    assert_one_line(exc, path, f"would build objects taking more than {limit} MiB")


def test_views_of_one_storage_read_it_once(tmp_path: Path):
    """200 official tensors viewing one 9.4 MB storage: read once and shared, as torch.load does."""
    path = shared_storage_official(tmp_path / "views.pth.tar", official_preset_shapes("b256"))
    assert path.stat().st_size < 10 * MIB
    report = probe("official_b256", path)
    assert report[f"{path.name} official_b256"] == "ok" and report["peak_mb"] < RSS_BOUND_MB, report

    obj, archive = torch_zip.open_archive(path)
    tensors = torch_zip.materialise(obj["net"], archive)
    expected = torch.load(path, weights_only=True)["net"]
    assert all(torch.equal(tensors[k], expected[k]) for k in expected)
    assert len({t.untyped_storage().data_ptr() for t in tensors.values()}) == 1


def vit_l_checkpoint(path: Path, state: dict[str, torch.Tensor]) -> Path:
    data = DataConfig(source="synthetic", classes="airplane", synthetic_sequences=2, synthetic_frames=12)
    settings = build_settings("l256", {}, {}, data)
    ckpt = checkpoints.Checkpoint(
        epoch=1,
        settings=settings,
        model_state_dict=state,
        optimizer_state_dict={},
        scheduler_state_dict={},
        loss=0.0,
        iou=0.0,
        dataset_info={},
        rng_state={},
    )
    return checkpoints.save(ckpt, path)


def tiny_state() -> dict[str, torch.Tensor]:
    settings = build_settings("tiny", {"search_size": 64, "template_size": 64}, {}, DataConfig())
    return SeqTrack(settings.model).state_dict()


def test_a_config_far_bigger_than_its_weights_is_refused_on_the_meta_device(tmp_path: Path):
    """A verified checkpoint claiming ViT-L (308M parameters) for tiny weights: refused from the
    shapes, before the 1.2 GB model is built."""
    tiny = vit_l_checkpoint(tmp_path / "tiny-weights.ckpt", tiny_state())
    with pytest.raises(CheckpointError) as exc:
        load_trained_weights(tiny, None)
    assert_one_line(exc, tiny, "weights do not fit its model config", "308.2M parameters")
    few = vit_l_checkpoint(tmp_path / "one-tensor.ckpt", {"head.weight": torch.zeros(2, 2)})
    assert few.stat().st_size < 20_000
    with pytest.raises(CheckpointError) as exc:
        load_trained_weights(few, None)
    assert_one_line(exc, few, "26 blocks, 1 tensors")

    report = probe("evaluate", tiny, few)
    assert report["peak_mb"] < RSS_BOUND_MB, report
    assert "weights do not fit its model config" in report[f"{tiny.name} evaluate"]


def test_resume_refuses_a_config_bigger_than_its_weights_before_building(tmp_path: Path, mlflow_uri: str):
    """`train --resume` gets the same check: one line, exit 2, no run started and no model built."""
    few = vit_l_checkpoint(tmp_path / "one-tensor.ckpt", {"head.weight": torch.zeros(2, 2)})
    result = CliRunner().invoke(main, ["train", "--resume", str(few), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "26 blocks, 1 tensors" in errors[0], result.stderr
    assert not (tmp_path / "outputs").exists()


# ---------------------------------------------------------------- case 9: format_version


@pytest.mark.parametrize("version", [0, -1])
def test_format_version_below_one_is_refused(tmp_path: Path, version: int):
    values = checkpoints.seal({"format_version": version, "epoch": 1, "config": {}, "model_state_dict": {}})
    path = checkpoints.write_atomic(values, tmp_path / "epoch_1.ckpt")
    with pytest.raises(CheckpointError) as exc:
        checkpoints.load(path)
    assert_one_line(exc, path, f"format version {version} does not exist")


# ---------------------------------------------------------------- what genuine files still pass


def test_the_scan_accepts_what_picklers_write():
    """Every protocol, shared and self-referencing containers, sets, bytes, objects, big ints."""
    cyclic: list = [1, 2]
    cyclic.append(cyclic)
    shared = {"w": [0.5] * 1000}
    value = {
        "nested": [[[{"k": (1, (2, (3,)))}]]] * 3,
        "shared": [shared, shared],
        "cyclic": cyclic,
        "sets": ({1, 2}, frozenset({"a"})),
        "bytes": b"\x00" * 300,
        "big": 2**200,
        "od": OrderedDict(a=1),
        "text": "é" * 100,
    }
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        pickle_scan.scan(pickle.dumps(value, protocol=protocol))


def test_a_checkpoint_with_500_epochs_of_report_curves_passes_the_scan():
    """600,000 reports (500 epochs of 60,000 samples, one report per 50): 1.8M opcodes, 14 MB."""
    steps = list(range(0, 30_000_000, 50))
    curves = {"history": {"steps": steps, "loss": [0.5] * len(steps), "iou": [0.25] * len(steps)}}
    pickle_scan.scan(pickle.dumps(curves, protocol=2))
