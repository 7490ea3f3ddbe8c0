"""SeqTrack as two ONNX graphs for onnxruntime, and the JSON that says how to run them.

- `encoder.onnx`: templates (B, nt, 3, T, T) + search (B, 3, S, S) -> memory_k, memory_v
  (layers, B, heads, Ns, head_dim): the ViT, the bridge and every decoder layer's cross-attention keys
  and values, which the PyTorch tracker computes once per frame (`SeqTrack.decoder_input`), folded in.
- `decoder_step.onnx`: one cached greedy step, token (B, 1) + memory_k/v + past_k/v (layers, B, heads, P,
  head_dim) -> logits (B, vocab) of the next token + present_k/v (P + 1 positions). The token's
  position is P, so the first step gets an empty past (P = 0); `DecoderLayer.step_with_past` is the
  same arithmetic as the PyTorch cache, written without in-place writes.
- `seqtrack_onnx.json`: the model settings, the graphs' inputs and outputs, the cache shape, the
  weights' digest and this format's version.

The token choice (softmax, Hann window, argmax, confidence) stays outside the graphs, in the code the
PyTorch path runs (`tokens.greedy_decode`), so both backends choose tokens the same way. The batch axis
is dynamic in both graphs. `quantize_encoder` writes `encoder.int8w7.onnx`: onnxruntime's dynamic int8
quantisation of the encoder graph. Pure: no MLflow; needs the `[onnx]` extra (onnx, onnxscript for
`torch.onnx.export`, onnxruntime for quantisation).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import io
import json
import logging
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config import ConfigError, ModelConfig
from .precision import INT8_LAYERS
from .seqtrack import SeqTrack

ENCODER_FILE = "encoder.onnx"
# The name says the weights' width: a file quantised with 8-bit weights (before 7 bits, see
# `quantize_encoder`) in an export folder or the cache is never taken for one of these.
ENCODER_INT8_FILE = "encoder.int8w7.onnx"
DECODER_FILE = "decoder_step.onnx"
INFO_FILE = "seqtrack_onnx.json"
FORMAT = "seqtrack-onnx"
FORMAT_VERSION = 1
# 23: attention (F.scaled_dot_product_attention) exports as one Attention op, GELU as Gelu (opset 20),
# LayerNorm as LayerNormalization (17): onnxruntime runs each as one kernel. Measured on the b256
# encoder against opset 18's MatMul/Softmax/Erf decomposition: int8 about 17% faster, fp32 about 6%.
OPSET = 23
ENCODER_IO = (("templates", "search"), ("memory_k", "memory_v"))
DECODER_IO = (("token", "memory_k", "memory_v", "past_k", "past_v"), ("logits", "present_k", "present_v"))
INSTALL_HINT = "pip install -e '.[onnx]'"
NAME_SCOPES = "pkg.torch.onnx.name_scopes"  # the module path torch.onnx.export records on each node


def missing_packages(names: tuple[str, ...] = ("onnx", "onnxscript", "onnxruntime")) -> list[str]:
    """Which of the `[onnx]` extra's packages this environment cannot import."""
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def require_packages(what: str, names: tuple[str, ...] = ("onnx", "onnxscript", "onnxruntime")) -> None:
    """Refuse `what` in one line naming the install command when a package of the extra is absent."""
    missing = missing_packages(names)
    if missing:
        raise ConfigError(f"{what} needs {' and '.join(missing)} (not installed): {INSTALL_HINT}")


class EncoderGraph(nn.Module):
    """templates + search -> every decoder layer's cross-attention K and V, stacked (layers first)."""

    def __init__(self, model: SeqTrack) -> None:
        super().__init__()
        self.model = model

    def forward(self, templates: Tensor, search: Tensor) -> tuple[Tensor, Tensor]:
        kv = self.model.decoder_input(self.model.encode(templates, search)).memory_kv
        return torch.stack([k for k, _ in kv]), torch.stack([v for _, v in kv])


class DecoderStepGraph(nn.Module):
    """token (B, 1) + memory K/V + past K/V -> next-token logits (B, vocab) + present K/V."""

    def __init__(self, model: SeqTrack) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, token: Tensor, memory_k: Tensor, memory_v: Tensor, past_k: Tensor, past_v: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        layers = range(len(self.model.decoder.layers))
        memory_kv = [(memory_k[i], memory_v[i]) for i in layers]
        hidden, present = self.model.decoder.step_with_past(
            token, memory_kv, [(past_k[i], past_v[i]) for i in layers]
        )
        logits = self.model.head(hidden[:, -1])
        return logits, torch.stack([k for k, _ in present]), torch.stack([v for _, v in present])


@dataclass(frozen=True)
class OnnxExport:
    """An export folder and what its JSON says."""

    folder: Path
    info: dict[str, Any]

    @property
    def model_cfg(self) -> ModelConfig:
        return ModelConfig(**self.info["model"])

    @property
    def encoder(self) -> Path:
        return self.folder / ENCODER_FILE

    @property
    def encoder_int8(self) -> Path:
        return self.folder / ENCODER_INT8_FILE

    @property
    def decoder(self) -> Path:
        return self.folder / DECODER_FILE

    @property
    def cache_shape(self) -> tuple[int, int, int]:
        """(layers, heads, head_dim) of the K/V tensors: the past is (layers, B, heads, P, head_dim)."""
        d = self.info["decoder"]
        return d["layers"], d["heads"], d["head_dim"]


def weights_digest(model: SeqTrack) -> str:
    """SHA-256 over the model settings, every tensor of the state dict and this format's version: the
    name of an export in the cache (the same weights reuse it; any change makes a new one)."""
    digest = hashlib.sha256(json.dumps([FORMAT_VERSION, OPSET, dataclasses.asdict(model.cfg)]).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        data = tensor.detach().cpu().contiguous()
        digest.update(str((data.dtype, tuple(data.shape))).encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training)


def _export(module: nn.Module, args: tuple[Tensor, ...], path: Path, io_names, dynamic) -> None:
    """torch.onnx.export (the torch.export-based exporter) into one self-contained file, quietly."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # axis-name notes and tracer notices: nothing for a user to do
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=list(io_names[0]),
            output_names=list(io_names[1]),
            dynamic_shapes=dynamic,
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def export_onnx(model: SeqTrack, out_dir: Path) -> OnnxExport:
    """Write the two graphs and the JSON into `out_dir`, each graph checked with `onnx.checker`. They
    are written beside it first and `out_dir` is created (or an earlier export there replaced) only
    when they are whole. The model's train/eval mode is left as it was."""
    require_packages("exporting to ONNX", ("onnx", "onnxscript"))
    import onnx

    cfg = model.cfg
    decoder = model.decoder
    layers, heads, head_dim = len(decoder.layers), decoder.heads, decoder.dim // decoder.heads
    device = next(model.parameters()).device
    batch = 2  # torch.export treats sizes 0 and 1 as fixed: examples use 2
    gen = torch.Generator().manual_seed(0)
    t, s = cfg.template_size, cfg.search_size
    templates = torch.randn(batch, cfg.num_templates, 3, t, t, generator=gen).to(device)
    search = torch.randn(batch, 3, s, s, generator=gen).to(device)
    token = torch.full((batch, 1), cfg.start_token, device=device)
    # A tensor of its own for every input: the exporter wires one tensor passed twice to one input.
    memory = [torch.zeros(layers, batch, heads, cfg.search_grid**2, head_dim, device=device) for _ in "kv"]
    past = [torch.zeros(layers, batch, heads, 2, head_dim, device=device) for _ in "kv"]
    b = torch.export.Dim("batch", min=1, max=4096)
    p = torch.export.Dim("past", min=0, max=decoder.max_len - 1)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir} is a file: give a folder to export into")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with _eval_mode(model), tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=".export-") as tmp:
        staged = Path(tmp)
        _export(EncoderGraph(model), (templates, search), staged / ENCODER_FILE, ENCODER_IO, ({0: b}, {0: b}))
        dynamic = ({0: b}, {1: b}, {1: b}, {1: b, 3: p}, {1: b, 3: p})
        args = (token, *memory, *past)
        _export(DecoderStepGraph(model), args, staged / DECODER_FILE, DECODER_IO, dynamic)
        for name in (ENCODER_FILE, DECODER_FILE):
            onnx.checker.check_model(str(staged / name), full_check=True)
        info = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "opset": OPSET,
            "torch": torch.__version__,
            "weights_sha256": weights_digest(model),
            "model": dataclasses.asdict(cfg),
            "decoder": {"layers": layers, "heads": heads, "head_dim": head_dim, "max_len": decoder.max_len},
            "tokens": {"bins": cfg.bins, "start": cfg.start_token, "vocab": cfg.vocab_size},
            "encoder": {"file": ENCODER_FILE, "inputs": ENCODER_IO[0], "outputs": ENCODER_IO[1]},
            "decoder_step": {"file": DECODER_FILE, "inputs": DECODER_IO[0], "outputs": DECODER_IO[1]},
        }
        (staged / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        out_dir.mkdir(exist_ok=True)
        (out_dir / INFO_FILE).unlink(missing_ok=True)  # an earlier export's, until the new one is whole
        for name in (ENCODER_FILE, DECODER_FILE, INFO_FILE):  # the JSON last: it marks a whole export
            shutil.move(staged / name, out_dir / name)
    (out_dir / ENCODER_INT8_FILE).unlink(missing_ok=True)  # quantised from an earlier encoder
    return read_export(out_dir)


def read_export(folder: Path) -> OnnxExport:
    """An export folder written by `export_onnx`; anything else is refused in one line."""
    path = folder / INFO_FILE
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{folder} is not a SeqTrack ONNX export ({path.name}: {exc}): run export-onnx"
        ) from None
    if not isinstance(info, dict) or info.get("format") != FORMAT or info.get("version") != FORMAT_VERSION:
        raise ConfigError(
            f"{path} is not a SeqTrack ONNX export of version {FORMAT_VERSION}: export again with export-onnx"
        )
    export = OnnxExport(folder, info)
    for graph in (export.encoder, export.decoder):
        if not graph.is_file():
            raise ConfigError(f"{folder} lacks {graph.name}: export again with export-onnx")
    return export


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime's quantiser suggests its shape pre-processing through the root logger (which would
    also configure logging for the whole process); that pre-processing does not know opset 23's
    Attention op, so the note is dropped, and logging left as it was."""
    root = logging.getLogger()
    placeholder = logging.NullHandler()  # a handler present: logging.warning() configures nothing
    root.addHandler(placeholder)
    previous = root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)
        root.removeHandler(placeholder)


def vit_linear_nodes(graph_path: Path) -> list[str]:
    """The MatMul nodes of the ViT blocks' linear layers (qkv, proj, fc1, fc2: `precision.INT8_LAYERS`),
    found by the module path the exporter records on every node (`pkg.torch.onnx.name_scopes`)."""
    import onnx

    graph = onnx.load(str(graph_path), load_external_data=False)
    pattern = re.compile(r"model\.encoder\.blocks\.\d+\.\w+\.(" + "|".join(INT8_LAYERS) + r")")
    return [
        node.name
        for node in graph.graph.node
        if node.op_type == "MatMul"
        and any(p.key == NAME_SCOPES and pattern.search(p.value) for p in node.metadata_props)
    ]


def quantize_encoder(export: OnnxExport) -> Path:
    """`encoder.int8w7.onnx` (written once, then reused): onnxruntime's dynamic quantisation of the
    encoder graph's ViT linear layers, as `eval_precision=int8` in PyTorch (`model/precision.py`):
    int8 weights per output channel, kept to 7 bits (`reduce_range`), activations quantised per call
    (uint8). 7-bit weights because the file must track well on any x86 CPU: without VNNI, onnxruntime's
    u8s8 kernel sums pairs of products in int16 and saturates with 8-bit weights (measured on an AMD EPYC
    without VNNI: a tiny model's tracked box 69 px away from fp32's, under 16 px with 7 bits);
    with VNNI 7 bits cost a little precision and no time. The bridge to the decoder stays float32
    (quantising it too moved the b256 memory further from fp32 and saved no time). Tried and left out on
    the b256 encoder: one weight scale per matrix, no faster; uint8 weights, slower."""
    target = export.encoder_int8
    if target.is_file():
        return target
    require_packages("eval_precision=int8 with backend=onnx", ("onnx", "onnxruntime"))
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = vit_linear_nodes(export.encoder)
    if not nodes:
        raise ConfigError(
            f"{export.encoder} has no ViT linear layers to quantise: export again with export-onnx"
        )
    with tempfile.TemporaryDirectory(dir=export.folder, prefix=".quantize-") as tmp:
        staged = Path(tmp) / ENCODER_INT8_FILE
        with warnings.catch_warnings(), _quiet_root_logger():
            warnings.simplefilter("ignore")
            quantize_dynamic(
                export.encoder,
                staged,
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=True,
                op_types_to_quantize=["MatMul"],
                nodes_to_quantize=nodes,
            )
        shutil.move(staged, target)
    return target


__all__ = [
    "DECODER_FILE",
    "ENCODER_FILE",
    "ENCODER_INT8_FILE",
    "INFO_FILE",
    "INSTALL_HINT",
    "DecoderStepGraph",
    "EncoderGraph",
    "OnnxExport",
    "export_onnx",
    "missing_packages",
    "quantize_encoder",
    "read_export",
    "require_packages",
    "vit_linear_nodes",
    "weights_digest",
]
