"""The onnxruntime backend (`-P backend=onnx`): the exported graphs (`model/onnx_export.py`) behind the
tracker's runner seam (`evaluation/runners.py`), and the cache of exports.

Sessions: every graph optimisation onnxruntime has (level ALL: constant folding, operator fusions,
weight layouts for its CPU kernels), intra-op threads = torch's thread count (the physical cores by
default, so both backends get the same cores), one inter-op thread. CPU execution provider, or CUDA's
where the device is a GPU and onnxruntime-gpu is installed (inputs and outputs then travel through
host memory: the decoder's per-step tensors are small). `eval_precision=int8` runs the dynamically
quantised encoder graph one sample at a time, as PyTorch's int8 path does: activation scales are per
call, so a sample's result never depends on which sequences share its batch.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seqtrack_mlflow.config import ConfigError
from seqtrack_mlflow.datasets.cache import COMPLETE_MARKER, default_cache_dir, publish
from seqtrack_mlflow.model.onnx_export import (
    OnnxExport,
    export_onnx,
    quantize_encoder,
    read_export,
    require_packages,
    weights_digest,
)
from seqtrack_mlflow.model.seqtrack import SeqTrack

CACHE_SUBDIR = "onnx"


def cached_export(model: SeqTrack, cache_root: Path | None = None) -> OnnxExport:
    """The export of `model`'s weights in the cache (`$SEQTRACK_CACHE/onnx/<digest>`): reused when
        there, else written under a temporary name and published whole (`datasets.cache.publish`). A
    damaged export, or one of an older format version, is replaced."""
    digest = weights_digest(model)
    root = (cache_root or default_cache_dir()) / CACHE_SUBDIR
    target = root / digest[:32]
    if (target / COMPLETE_MARKER).is_file():
        try:
            export = read_export(target)
        except ConfigError:  # damaged, or of an older format version: export again
            export = None
        if export is not None and export.info.get("weights_sha256") == digest:
            return export
        shutil.rmtree(target)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".export-") as tmp:
        staged = Path(tmp) / "export"
        export_onnx(model, staged)
        (staged / COMPLETE_MARKER).touch()
        publish(staged, target)
    return read_export(target)


def session_options(threads: int | None = None) -> Any:
    """ORT_ENABLE_ALL, `threads` intra-op threads (default torch's count), one inter-op thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: no per-session notes on the console
    return options


class OnnxRunner:
    """`Runner` over an export: the encoder graph once per frame, the decoder-step graph per token."""

    def __init__(
        self,
        export: OnnxExport,
        precision: str = "fp32",
        device: torch.device | str = "cpu",
        threads: int | None = None,
    ) -> None:
        require_packages("backend=onnx", ("onnxruntime",))
        import onnxruntime as ort

        gpu = torch.device(device).type == "cuda"
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else ["CPUExecutionProvider"]
        options = session_options(threads)
        encoder = quantize_encoder(export) if precision == "int8" else export.encoder
        self.export = export
        self.cfg = export.model_cfg
        self.device = torch.device("cpu")  # crops in and logits out through host memory
        self.per_sample = precision == "int8"
        self.encoder = ort.InferenceSession(str(encoder), options, providers=providers)
        self.decoder = ort.InferenceSession(str(export.decoder), options, providers=providers)

    def encode(self, templates: Tensor, search: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """-> memory_k, memory_v (layers, B, heads, Ns, head_dim) as numpy arrays."""
        t = templates.detach().cpu().numpy().astype(np.float32, copy=False)
        s = search.detach().cpu().numpy().astype(np.float32, copy=False)
        if not self.per_sample or len(t) == 1:
            k, v = self.encoder.run(None, {"templates": t, "search": s})
            return k, v
        parts = [
            self.encoder.run(None, {"templates": t[i : i + 1], "search": s[i : i + 1]}) for i in range(len(t))
        ]
        return np.concatenate([k for k, _ in parts], axis=1), np.concatenate([v for _, v in parts], axis=1)

    def decode_step(
        self, encoded: tuple[np.ndarray, np.ndarray], prefix: Tensor, cache: Any
    ) -> tuple[Tensor, tuple[np.ndarray, np.ndarray]]:
        """The last token of `prefix` at position len(past) -> its logits and the past one longer."""
        memory_k, memory_v = encoded
        if cache is None:
            layers, heads, head_dim = self.export.cache_shape
            empty = np.zeros((layers, memory_k.shape[1], heads, 0, head_dim), dtype=np.float32)
            cache = (empty, empty)
        feeds = {
            "token": prefix[:, -1:].cpu().numpy().astype(np.int64, copy=False),
            "memory_k": memory_k,
            "memory_v": memory_v,
            "past_k": cache[0],
            "past_v": cache[1],
        }
        logits, present_k, present_v = self.decoder.run(None, feeds)
        return torch.from_numpy(logits), (present_k, present_v)


__all__ = ["CACHE_SUBDIR", "OnnxRunner", "cached_export", "session_options"]
