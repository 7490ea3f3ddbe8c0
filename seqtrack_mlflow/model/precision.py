"""Reduced-precision inference for the tracker: the encoder (over 99% of a frame's multiply-adds) in
int8 or bfloat16, the decoder, the head and the token choice in float32 as before.

- `int8`: every linear layer of the ViT blocks (qkv, proj, fc1, fc2) is a dynamically quantised int8
  linear (weights per output channel once, activations per call): the fbgemm/x86 kernels behind
  `torch.ao.quantization.quantize_dynamic`, CPU only. That Python API carries a deprecation notice in
  favour of torchao, but torch 2.14 still ships it and it is the eager int8 path measured to speed up
  on the development CPU: the recipe of torchao's `Int8DynamicActivationInt8WeightConfig` run eagerly
  (per-token int8 activations, `torch._int_mm`, then a separate dequantisation pass), written out
  with torch ops, measured slower here than the fused fbgemm kernel (torchao gets its CPU speed from
  `torch.compile`; torchao itself is not a dependency). When a torch release drops the API,
  `eval_precision=int8` is refused with one line, as on a build without the kernels.
  The activations are quantised per call over the whole tensor, so each sample of a batch goes through
  the encoder on its own: int8 results never depend on which sequences share a batch. torch's module
  quantises them to 7 bits (AVX2's pairwise u8 x s8 sums saturate at 16 bits). Tried and left out:
  8 bits where fbgemm runs its VNNI kernels (32-bit sums) halves the encoder's error against fp32 on
  real crops (0.48% -> 0.27%), but the demo model's AUC did not follow (40 synthetic sequences: fp32
  30.37, 7-bit 30.52, 8-bit 29.61; fp32 with random encoder-weight noise of that size: 29.95-30.75),
  so the simpler path stays.
- `bf16`: the encoder under bfloat16 autocast (matrix products in bf16; LayerNorm, softmax and the
  residual stream in float32; the memory handed on in float32); on the CPU only where it has native
  bf16 dot products (AVX512-BF16 or AMX), elsewhere oneDNN would emulate them, slower than float32.

`check_precision` refuses an unusable combination with one line (`ConfigError`); `with_precision`
returns the model converted (a copy; the float32 model given is never modified).
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import Tensor, nn

from ..config import ConfigError

PRECISIONS = ("fp32", "int8", "bf16")
INT8_ENGINES = ("x86", "fbgemm")  # the x86 engines with dynamic int8 linear kernels
INT8_LAYERS = ("qkv", "proj", "fc1", "fc2")  # every linear layer of a timm ViT block


def _int8_engine() -> str | None:
    engines = list(getattr(torch.backends.quantized, "supported_engines", []))
    return next((e for e in INT8_ENGINES if e in engines), None)


def _quantize_dynamic():
    """torch.ao.quantization.quantize_dynamic, or None where this torch no longer ships it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its deprecation notice (see the module docstring)
            from torch.ao.quantization import quantize_dynamic
    except ImportError:
        return None
    return quantize_dynamic


def cpu_bf16_native() -> bool:
    """Native bf16 dot products on this CPU (AVX512-BF16 or AMX tiles) and oneDNN bf16 in this build."""
    cpu = torch.cpu
    flags = [
        getattr(cpu, name, lambda: False) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    ]
    try:
        native = any(flag() for flag in flags)
        return native and bool(torch.backends.mkldnn.is_available())
    except (RuntimeError, AttributeError):
        return False


def check_precision(precision: str, device: torch.device | str) -> None:
    """Refuse, with one line, a precision this device or torch build cannot run (or not faster)."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ConfigError(f"eval_precision={precision} is invalid: use one of {', '.join(PRECISIONS)}")
    if precision == "int8":
        if device.type != "cpu":
            raise ConfigError(
                f"eval_precision=int8 runs on the CPU only (device {device}): "
                "use eval_precision=bf16 on a GPU"
            )
        if _int8_engine() is None or _quantize_dynamic() is None:
            raise ConfigError(
                f"eval_precision=int8: this torch build ({torch.__version__}) has no dynamic int8 linear "
                "kernels (fbgemm/x86): use eval_precision=fp32"
            )
    elif precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError(
                f"eval_precision=bf16: GPU {device} has no bf16 support: use eval_precision=fp32"
            )
        if device.type == "cpu" and not cpu_bf16_native():
            raise ConfigError(
                "eval_precision=bf16: this CPU has no native bf16 (AVX512-BF16 or AMX) or this torch build "
                "no oneDNN: use eval_precision=fp32 (or int8)"
            )
        if device.type not in ("cpu", "cuda"):
            raise ConfigError(f"eval_precision=bf16 is for CPU or CUDA devices, not {device}: use fp32")


class CastEncoder(nn.Module):
    """An encoder run under bfloat16 autocast: matrix products in bf16, while LayerNorm, softmax and
    the residual stream stay float32 (casting the whole encoder to bf16 rounds the residual sums at
    every block and moved the demo AUC by several points); the memory comes out in float32."""

    def __init__(self, encoder: nn.Module, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.inner = encoder
        self.dtype = dtype

    def forward(self, templates: Tensor, search: Tensor) -> Tensor:
        with torch.autocast(templates.device.type, dtype=self.dtype):
            out = self.inner(templates, search)
        return out.float()


class PerSampleEncoder(nn.Module):
    """Runs the wrapped encoder one sample at a time (per-tensor activation scales stay per sample)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.inner = encoder

    def forward(self, templates: Tensor, search: Tensor) -> Tensor:
        if templates.shape[0] == 1:
            return self.inner(templates, search)
        parts = [self.inner(templates[i : i + 1], search[i : i + 1]) for i in range(templates.shape[0])]
        return torch.cat(parts)


def quantize_int8(encoder: nn.Module) -> nn.Module:
    """The encoder with every nn.Linear replaced by a dynamic int8 linear (in place)."""
    engine = _int8_engine()
    if engine is None:
        raise ConfigError("eval_precision=int8: no fbgemm/x86 quantized engine in this torch build")
    torch.backends.quantized.engine = engine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the torch.ao deprecation notices
        from torch.ao.quantization import per_channel_dynamic_qconfig

        quantize_dynamic = _quantize_dynamic()
        # Weights per output channel (the default is one scale per matrix: coarser, larger AUC change).
        spec = {
            name: per_channel_dynamic_qconfig
            for name, module in encoder.named_modules()
            if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in INT8_LAYERS
        }
        return quantize_dynamic(encoder, spec, inplace=True)


def with_precision(model: nn.Module, precision: str, device: torch.device | str = "cpu") -> nn.Module:
    """`model` (a SeqTrack) for inference at `precision`: itself for fp32, else a converted copy."""
    check_precision(precision, device)
    if precision == "fp32":
        return model
    converted = copy.deepcopy(model).eval()
    if precision == "int8":
        converted.encoder = PerSampleEncoder(quantize_int8(converted.encoder.cpu()))
    else:
        converted.encoder = CastEncoder(converted.encoder)
    return converted


__all__ = [
    "PRECISIONS",
    "CastEncoder",
    "PerSampleEncoder",
    "check_precision",
    "cpu_bf16_native",
    "with_precision",
]
