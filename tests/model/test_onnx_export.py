"""ONNX export and the onnxruntime backend: checked graphs, the same tokens as PyTorch on real frames,
int8, the export cache, and one-line refusals (no onnxruntime, bf16)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from factories import small_settings

from seqtrack_mlflow.cli import main
from seqtrack_mlflow.config import ConfigError, TrackerConfig
from seqtrack_mlflow.datasets.lasot import read_sequence
from seqtrack_mlflow.datasets.synthetic import generate_lasot
from seqtrack_mlflow.evaluation.onnx_runner import OnnxRunner, cached_export
from seqtrack_mlflow.evaluation.runners import check_backend
from seqtrack_mlflow.evaluation.tracker import SeqTrackTracker, track_sequence, track_sequences
from seqtrack_mlflow.model.onnx_export import (
    DECODER_FILE,
    ENCODER_FILE,
    INFO_FILE,
    read_export,
    weights_digest,
)
from seqtrack_mlflow.workflows.main import run_pipeline

INSTALL = "pip install -e '.[onnx]'"


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def export(model, cache_root):
    """The conftest's tiny tracker model exported once for the module, into a cache folder."""
    return cached_export(model, cache_root)


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    dirs = generate_lasot(
        tmp_path_factory.mktemp("lasot"), ["airplane"], 2, frames=8, size=(160, 120), seed=3
    )
    return [read_sequence(d) for d in dirs]


def _feeds(cfg, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    t, s = cfg.template_size, cfg.search_size
    return torch.randn(batch, cfg.num_templates, 3, t, t, generator=gen), torch.randn(
        batch, 3, s, s, generator=gen
    )


def test_graphs_pass_the_checker_and_the_json_says_how_to_run_them(model, export):
    for name in (ENCODER_FILE, DECODER_FILE):
        graph = onnx.load(str(export.folder / name))
        onnx.checker.check_model(graph, full_check=True)
        batch_dims = {
            i.name: i.type.tensor_type.shape.dim[1 if i.name != "token" and name == DECODER_FILE else 0]
            for i in graph.graph.input
        }
        assert all(d.dim_param for d in batch_dims.values()), batch_dims  # a dynamic batch axis
    info = json.loads((export.folder / INFO_FILE).read_text())
    assert info["model"]["search_size"] == model.cfg.search_size == 64
    assert info["model"]["bins"] == model.cfg.bins and info["tokens"]["start"] == model.cfg.bins + 1
    assert info["decoder"] == {"layers": 2, "heads": 4, "head_dim": 32, "max_len": 5}
    assert info["encoder"]["outputs"] == ["memory_k", "memory_v"]
    assert info["decoder_step"]["inputs"] == ["token", "memory_k", "memory_v", "past_k", "past_v"]
    assert info["weights_sha256"] == weights_digest(model)


def test_each_graph_computes_what_the_torch_model_does(model, export):
    """Any batch size (dynamic axis); the decoder step from an empty past, then one token longer."""
    runner = OnnxRunner(export)
    for batch in (1, 3):
        templates, search = _feeds(model.cfg, batch)
        with torch.inference_mode():
            ref = model.decoder_input(model.encode(templates, search))
        memory_k, memory_v = runner.encode(templates, search)
        assert memory_k.shape == (2, batch, 4, 16, 32)
        np.testing.assert_allclose(memory_k, torch.stack([k for k, _ in ref.memory_kv]).numpy(), atol=1e-4)
        np.testing.assert_allclose(memory_v, torch.stack([v for _, v in ref.memory_kv]).numpy(), atol=1e-4)
        prefix = torch.full((batch, 1), model.cfg.start_token)
        cache = ort_cache = None
        for _ in range(2):
            with torch.inference_mode():
                logits, cache = model.decode_step(ref, prefix, cache)
            ort_logits, ort_cache = runner.decode_step((memory_k, memory_v), prefix, ort_cache)
            np.testing.assert_allclose(ort_logits.numpy(), logits.numpy(), atol=1e-4)
            prefix = torch.cat([prefix, logits.argmax(-1, keepdim=True)], dim=1)
        assert ort_cache[0].shape == (2, batch, 4, 2, 32)


def test_onnxruntime_tracker_gives_the_torch_boxes_on_real_frames(model, sequences, cache_root, monkeypatch):
    """The same tokens, hence boxes within 0.01 px, alone and batched; through -P backend=onnx the
    tracker exports into the cache once and then reuses the export."""
    monkeypatch.setenv("SEQTRACK_CACHE", str(cache_root))
    onnx_tracker = SeqTrackTracker(model, TrackerConfig(backend="onnx"))
    assert isinstance(onnx_tracker.runner, OnnxRunner)
    assert onnx_tracker.runner.export.folder.parent == cache_root / "onnx"
    torch_boxes = [track_sequence(SeqTrackTracker(model, TrackerConfig()), seq)[0] for seq in sequences]
    for seq, expected in zip(sequences, torch_boxes, strict=True):
        boxes, fps = track_sequence(onnx_tracker, seq)
        assert fps > 0 and len(boxes) == seq.num_frames
        np.testing.assert_allclose(boxes, expected, atol=0.01)
    assert not np.allclose(torch_boxes[0][1:], torch_boxes[0][0])  # the boxes do move: a real comparison
    for (boxes, _), expected in zip(
        track_sequences(onnx_tracker, sequences, batch=2), torch_boxes, strict=True
    ):
        np.testing.assert_allclose(boxes, expected, atol=0.01)


def test_int8_quantises_the_encoder_once_and_stays_close(model, export, sequences):
    runner = OnnxRunner(export, "int8")
    assert (
        export.encoder_int8.is_file() and export.encoder_int8.stat().st_size < export.encoder.stat().st_size
    )
    graph = onnx.load(str(export.encoder_int8))
    # The ViT blocks' linear layers (qkv, proj, fc1, fc2 of 2 blocks), as PyTorch's int8; the bridge not.
    assert sum(n.op_type == "MatMulInteger" for n in graph.graph.node) == 4 * model.cfg.encoder_depth == 8
    templates, search = _feeds(model.cfg, 1)
    with torch.inference_mode():
        ref = torch.stack([k for k, _ in model.decoder_input(model.encode(templates, search)).memory_kv])
    got = runner.encode(templates, search)[0]
    assert np.abs(got - ref.numpy()).max() < 0.1 * float(ref.abs().max())
    tracker = SeqTrackTracker(model, TrackerConfig(backend="onnx", eval_precision="int8"), runner=runner)
    fp32, _ = track_sequence(SeqTrackTracker(model, TrackerConfig()), sequences[0])
    alone = [track_sequence(tracker, seq)[0] for seq in sequences]
    assert np.abs(alone[0] - fp32).max() <= 16.0  # within 10% of the frame size
    # Activation scales per call: each sample through the int8 encoder on its own, as in PyTorch.
    for (boxes, _), expected in zip(track_sequences(tracker, sequences, batch=2), alone, strict=True):
        np.testing.assert_array_equal(boxes, expected)


def test_the_cache_reuses_an_export_of_the_same_weights(model, export, cache_root):
    stamp = export.encoder.stat().st_mtime_ns
    again = cached_export(model, cache_root)
    assert again.folder == export.folder and again.encoder.stat().st_mtime_ns == stamp
    changed = type(model)(model.cfg)
    changed.load_state_dict(model.state_dict())
    with torch.no_grad():
        changed.head.layers[-1].bias.add_(1.0)
    assert weights_digest(changed) != weights_digest(model)


def test_a_folder_that_is_not_an_export_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is not a SeqTrack ONNX export") as info:
        read_export(tmp_path)
    assert "\n" not in str(info.value)


def test_bf16_with_onnx_is_refused_in_one_line():
    cfg = TrackerConfig(backend="onnx", eval_precision="bf16")
    for check in (cfg.validate, lambda: check_backend(cfg, "cpu")):
        with pytest.raises(ConfigError, match="eval_precision=bf16 has no onnxruntime path") as info:
            check()
        assert "\n" not in str(info.value) and "backend=torch" in str(info.value)


def test_without_onnxruntime_backend_onnx_is_refused_naming_the_extra(
    monkeypatch, tmp_path, tiny_checkpoint_file
):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails
    with pytest.raises(ConfigError, match=r"backend=onnx needs onnxruntime \(not installed\)") as info:
        check_backend(TrackerConfig(backend="onnx"), "cpu")
    assert str(info.value).endswith(INSTALL) and "\n" not in str(info.value)
    check_backend(TrackerConfig(), "cpu")  # torch needs none of it
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--checkpoint",
            str(tiny_checkpoint_file),
            "--backend",
            "onnx",
            "--output_dir",
            str(out),
        ],
    )
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"error: backend=onnx needs onnxruntime (not installed): {INSTALL}"
    ]
    assert not out.exists() and not (tmp_path / "mlruns").exists()  # refused before any run
    # main: before the data selection and the training, not after them.
    with pytest.raises(ConfigError, match="backend=onnx needs onnxruntime"):
        run_pipeline(small_settings(1), TrackerConfig(backend="onnx"), output_dir=out)
    assert not out.exists() and not (tmp_path / "mlruns").exists()


def test_export_onnx_without_the_exporter_is_refused_naming_the_extra(
    tiny_checkpoint_file, tmp_path, monkeypatch
):
    out = tmp_path / "exported"
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    refused = CliRunner().invoke(
        main, ["export-onnx", "--checkpoint", str(tiny_checkpoint_file), "--out", str(out)]
    )
    assert refused.exit_code == 2 and refused.output.strip() == (
        f"error: export-onnx needs onnxscript (not installed): {INSTALL}"
    )
    assert not out.exists()


def test_export_onnx_command(tiny_checkpoint_file, tmp_path):
    out = tmp_path / "exported"
    result = CliRunner().invoke(
        main, ["export-onnx", "--checkpoint", str(tiny_checkpoint_file), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [DECODER_FILE, ENCODER_FILE, INFO_FILE]
    assert result.output.startswith(f"{out}/: decoder_step.onnx (")
    export = read_export(out)
    assert export.model_cfg.encoder_depth == 4 and export.model_cfg.search_size == 64  # the checkpoint's
    assert not list(tmp_path.glob(".export-*"))  # nothing staged left behind
