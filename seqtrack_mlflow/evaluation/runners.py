"""The seam between the tracker and what computes the model (`-P backend=`).

A runner encodes a batch of crops and runs one decoder step; the tracker keeps everything else (crops,
search window, the greedy token choice of `tokens.greedy_decode`, box mapping, template update), so
both backends track the same way:
- `TorchRunner`: the PyTorch model at `eval_precision` (`model/precision.py`);
- `OnnxRunner` (`evaluation/onnx_runner.py`): the exported graphs under onnxruntime.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor

from seqtrack_mlflow.config import ConfigError, ModelConfig, TrackerConfig
from seqtrack_mlflow.model.onnx_export import INSTALL_HINT, require_packages
from seqtrack_mlflow.model.precision import check_precision, with_precision
from seqtrack_mlflow.model.seqtrack import SeqTrack

BACKENDS = ("torch", "onnx")


class Runner(Protocol):
    """Encode once per frame, then one call per greedy step (`tokens.DecodeStep` with `encoded` bound)."""

    cfg: ModelConfig
    device: torch.device  # where the tracker puts the crops and keeps the tokens

    def encode(self, templates: Tensor, search: Tensor) -> Any:
        """templates (B, nt, 3, T, T), search (B, 3, S, S) -> what the decoder steps read."""
        ...

    def decode_step(self, encoded: Any, prefix: Tensor, cache: Any) -> tuple[Tensor, Any]:
        """The tokens so far (B, n) -> the next token's logits (B, vocab) and the cache for the next."""
        ...


class TorchRunner:
    """The PyTorch model, its encoder at `precision` (a converted copy for int8 / bf16)."""

    def __init__(
        self, model: SeqTrack, precision: str, device: torch.device | str, use_cache: bool = True
    ) -> None:
        self.device = torch.device(device)
        self.model = with_precision(model.to(self.device).eval(), precision, self.device)
        self.cfg = model.cfg
        self.use_cache = use_cache

    def encode(self, templates: Tensor, search: Tensor) -> Any:
        return self.model.decoder_input(self.model.encode(templates, search), self.use_cache)

    def decode_step(self, encoded: Any, prefix: Tensor, cache: Any) -> tuple[Tensor, Any]:
        return self.model.decode_step(encoded, prefix, cache)


def check_backend(cfg: TrackerConfig, device: torch.device | str) -> None:
    """Refuse, in one line and before any run starts, a backend / precision / device this environment
    cannot run."""
    device = torch.device(device)
    if cfg.backend not in BACKENDS:
        raise ConfigError(f"backend={cfg.backend} is invalid: use one of {', '.join(BACKENDS)}")
    if cfg.backend == "torch":
        check_precision(cfg.eval_precision, device)
        return
    cfg.check_backend_precision()
    require_packages("backend=onnx")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"backend=onnx runs on the CPU or a CUDA GPU, not {device}: use -P device=cpu")
    if device.type == "cuda":
        if cfg.eval_precision == "int8":
            raise ConfigError(
                f"eval_precision=int8 runs on the CPU only (device {device}): use eval_precision=fp32"
            )
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise ConfigError(
                f"backend=onnx on {device} needs onnxruntime-gpu (this onnxruntime has no CUDA "
                "provider): pip install onnxruntime-gpu, or -P device=cpu"
            )


def make_runner(
    model: SeqTrack, cfg: TrackerConfig, device: torch.device | str, use_cache: bool = True
) -> Runner:
    """The runner `cfg.backend` names, for `model`'s weights (checked by `check_backend` first). The
    onnx backend exports the model into the cache, or reuses the export of the same weights."""
    check_backend(cfg, device)
    if cfg.backend == "torch":
        return TorchRunner(model, cfg.eval_precision, device, use_cache)
    from seqtrack_mlflow.evaluation.onnx_runner import OnnxRunner, cached_export

    return OnnxRunner(cached_export(model), cfg.eval_precision, device)


__all__ = ["BACKENDS", "INSTALL_HINT", "Runner", "TorchRunner", "check_backend", "make_runner"]
