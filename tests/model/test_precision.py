"""Reduced-precision tracking (eval_precision): int8 / bf16 encoders, refusals in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqtrack_mlflow.config import ConfigError, TrackerConfig
from seqtrack_mlflow.datasets.lasot import read_sequence
from seqtrack_mlflow.datasets.synthetic import generate_lasot
from seqtrack_mlflow.evaluation.tracker import SeqTrackTracker, track_sequence, track_sequences
from seqtrack_mlflow.model import precision
from seqtrack_mlflow.model.precision import check_precision, with_precision


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    dirs = generate_lasot(
        tmp_path_factory.mktemp("lasot"), ["airplane"], 2, frames=5, size=(160, 120), seed=3
    )
    return [read_sequence(d) for d in dirs]


def _int8_available() -> bool:
    try:
        check_precision("int8", "cpu")
    except ConfigError:
        return False
    return True


def _inputs(cfg, batch: int = 1):
    gen = torch.Generator().manual_seed(1)
    t, s = cfg.template_size, cfg.search_size
    return torch.randn(batch, cfg.num_templates, 3, t, t, generator=gen), torch.randn(
        batch, 3, s, s, generator=gen
    )


@pytest.mark.skipif(not _int8_available(), reason="no int8 kernels in this torch build")
def test_int8_tracking_runs_and_stays_close(model, sequences):
    converted = with_precision(model, "int8")
    assert converted is not model and model.encoder.blocks[0].attn.qkv.__class__ is torch.nn.Linear  # a copy
    templates, search = _inputs(model.cfg)
    with torch.inference_mode():
        ref, got = model.encode(templates, search), converted.encode(templates, search)
    assert got.dtype == torch.float32
    assert float((got - ref).abs().max()) < 0.1 * float(ref.abs().max())
    fp32, _ = track_sequence(SeqTrackTracker(model, TrackerConfig()), sequences[0])
    int8, fps = track_sequence(SeqTrackTracker(model, TrackerConfig(eval_precision="int8")), sequences[0])
    assert fps > 0 and np.isfinite(int8).all()
    np.testing.assert_array_equal(int8[0], fp32[0])
    # Boxes close to fp32's: within 10% of the frame size on every coordinate.
    assert np.abs(int8 - fp32).max() <= 16.0


@pytest.mark.skipif(not _int8_available(), reason="no int8 kernels in this torch build")
def test_int8_batched_equals_one_at_a_time(model, sequences):
    """Activation scales are per call: each sample goes through the int8 encoder on its own."""
    cfg = TrackerConfig(eval_precision="int8")
    alone = [track_sequence(SeqTrackTracker(model, cfg), seq)[0] for seq in sequences]
    together = track_sequences(SeqTrackTracker(model, cfg), sequences, batch=2)
    for expected, (got, _) in zip(alone, together, strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.skipif(not precision.cpu_bf16_native(), reason="no native bf16 on this CPU")
def test_bf16_encoder_close_to_fp32(model):
    converted = with_precision(model, "bf16")
    templates, search = _inputs(model.cfg, batch=2)
    with torch.inference_mode():
        ref, got = model.encode(templates, search), converted.encode(templates, search)
    assert got.dtype == torch.float32
    assert float((got - ref).abs().max()) < 0.1 * float(ref.abs().max())
    assert next(model.parameters()).dtype == torch.float32  # the fp32 model is untouched


def test_fp32_is_the_model_itself(model):
    assert with_precision(model, "fp32") is model


def test_refusals_are_one_line(monkeypatch, model):
    monkeypatch.setattr(precision, "cpu_bf16_native", lambda: False)
    with pytest.raises(ConfigError, match="eval_precision=bf16: this CPU has no native bf16") as info:
        SeqTrackTracker(model, TrackerConfig(eval_precision="bf16"))
    assert "\n" not in str(info.value)
    monkeypatch.setattr(precision, "_int8_engine", lambda: None)
    with pytest.raises(ConfigError, match="eval_precision=int8: this torch build") as info:
        check_precision("int8", "cpu")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="int8 runs on the CPU only"):
        check_precision("int8", torch.device("cuda"))
    with pytest.raises(ConfigError, match="eval_precision=fp16 is invalid"):
        check_precision("fp16", "cpu")


def test_evaluate_refuses_before_a_run_starts(monkeypatch, tmp_path):
    from seqtrack_mlflow.steps.evaluate import run_evaluate

    monkeypatch.setattr(precision, "_int8_engine", lambda: None)
    with pytest.raises(ConfigError, match="eval_precision=int8"):
        run_evaluate("unused.ckpt", TrackerConfig(eval_precision="int8"), device="cpu", output_dir=tmp_path)
    assert not (tmp_path / "mlruns").exists()
