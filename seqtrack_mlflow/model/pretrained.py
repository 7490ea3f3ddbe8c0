"""Initialise the encoder from ViT weights: a timm model name or a local weights file.

As the official code: the cls token is dropped and the pretrained 14x14 positional table (cls entry
dropped) is interpolated bicubically (align_corners=True) to the search grid and, separately, to
the template grid. Beyond it: the patch embedding is resampled (FlexiViT pseudo-inverse, timm's
`resample_patch_embed`) when the configured patch size differs from the checkpoint's, so MAE
weights still help at patch 8 or 4.
"""

from __future__ import annotations

import contextlib
import logging
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig
from ..messages import first_line
from .torch_file import check_file

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")
_FIX = "use -P pretrained=none to train from scratch, or -P pretrained=/path/to/weights.pth"
_HUB_PREFIXES = ("hf-hub:", "hf_hub:")


class PretrainedError(RuntimeError):
    """Pretrained weights that cannot be obtained or do not fit: one line naming the spec and the fix."""


@dataclass
class PretrainedReport:
    """What loading did, for logs and MLflow tags."""

    source: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    patch_resampled: tuple[int, int] | None = None  # (from, to)
    pos_grid: tuple[int, int, int] | None = None  # (from, search grid, template grid)


def _looks_like_path(spec: str) -> bool:
    if spec.startswith(_HUB_PREFIXES):
        return False
    path = Path(spec).expanduser()
    return path.suffix.lower() in WEIGHT_SUFFIXES or path.exists() or spec.startswith(("/", ".", "~"))


def _offline_errors() -> tuple[type[BaseException], ...]:
    """Exceptions a failed download raises (hub, http clients, urllib)."""
    errors: list[type[BaseException]] = [OSError, ConnectionError, TimeoutError]
    try:
        from huggingface_hub.errors import HfHubHTTPError

        errors.append(HfHubHTTPError)
    except ImportError:  # pragma: no cover - very old huggingface_hub
        pass
    for module, name in (("httpx", "HTTPError"), ("requests", "RequestException")):
        with contextlib.suppress(ImportError, AttributeError):
            errors.append(getattr(__import__(module), name))
    return tuple(errors)


def _from_timm(name: str) -> dict[str, Tensor]:
    import timm

    if not name.startswith(_HUB_PREFIXES) and not timm.is_model(name):
        raise PretrainedError(
            f"pretrained weights {name!r} are neither an existing file nor a timm model name: {_FIX}"
        )
    try:
        model = timm.create_model(name, pretrained=True, num_classes=0)
    except _offline_errors() as exc:
        raise PretrainedError(f"cannot download pretrained weights {name!r} (offline?): {_FIX}") from exc
    except RuntimeError as exc:  # e.g. "Invalid pretrained tag"
        raise PretrainedError(f"cannot load pretrained weights {name!r} ({first_line(exc)}): {_FIX}") from exc
    return model.state_dict()


def _from_file(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise PretrainedError(f"pretrained weights file '{path}' not found: {_FIX}")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            if zipfile.is_zipfile(path):  # its directory and pickle opcodes first: no bomb reaches torch
                check_file(path)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input to fix
        raise PretrainedError(
            f"cannot read pretrained weights file '{path}' ({first_line(exc)}): {_FIX}"
        ) from exc
    for key in ("model", "state_dict", "model_state_dict", "net"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise PretrainedError(f"pretrained weights file '{path}' holds no state dict of tensors: {_FIX}")
    return obj


def _strip_prefix(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Accept `module.`, `encoder.`, `backbone.` ... wrappers: cut whatever precedes `patch_embed.`."""
    anchor = next((k for k in sd if k.endswith("patch_embed.proj.weight")), None)
    if anchor is None:
        return sd
    prefix = anchor[: -len("patch_embed.proj.weight")]
    if not prefix:
        return sd
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def _pos_grid(table: Tensor, spec: str) -> tuple[Tensor, int]:
    """(1, [cls +] g*g, D) -> (1, D, g, g) without prefix tokens, and g."""
    table = table.reshape(-1, table.shape[-1])
    for prefix in (0, 1):
        side = math.isqrt(table.shape[0] - prefix)
        if side * side == table.shape[0] - prefix:
            grid = table[prefix:].reshape(side, side, -1).permute(2, 0, 1)[None]
            return grid, side
    raise PretrainedError(
        f"pretrained weights {spec!r} have a pos_embed of {table.shape[0]} entries, not a square grid: {_FIX}"
    )


def _resize_pos(grid: Tensor, side: int) -> Tensor:
    """Bicubic, align_corners=True (the official choice), to (1, side*side, D)."""
    if grid.shape[-1] != side:
        grid = F.interpolate(grid.float(), size=(side, side), mode="bicubic", align_corners=True)
    return grid.flatten(2).transpose(1, 2)


def adapt_state_dict(
    sd: dict[str, Tensor], encoder: nn.Module, cfg: ModelConfig, spec: str, report: PretrainedReport
) -> dict[str, Tensor]:
    """Turn a timm-ViT state dict into one for `ViTEncoder` (pure: `sd` is not modified)."""
    sd = dict(_strip_prefix(sd))
    for key in ("cls_token", "dist_token", "reg_token", "mask_token"):
        sd.pop(key, None)
    sd = {k: v for k, v in sd.items() if not k.startswith(("head.", "fc_norm.", "decoder", "head_drop"))}
    proj = sd.get("patch_embed.proj.weight")
    if proj is None:
        raise PretrainedError(
            f"pretrained weights {spec!r} have no patch_embed.proj.weight (not a ViT?): {_FIX}"
        )
    if proj.dim() == 2:  # weights of a linear patchify (some MAE ports): back to a conv kernel
        side = math.isqrt(proj.shape[1] // 3)
        proj = proj.reshape(proj.shape[0], 3, side, side)
    if proj.shape[0] != cfg.encoder_dim:
        raise PretrainedError(
            f"pretrained weights {spec!r} are {proj.shape[0]} wide but the encoder is {cfg.encoder_dim} "
            "wide: use a preset of that width (b256/b384: ViT-B, l256/l384: ViT-L) or -P pretrained=none"
        )
    if proj.shape[-1] != cfg.patch_size or proj.shape[-2] != cfg.patch_size:
        from timm.layers import resample_patch_embed

        report.patch_resampled = (int(proj.shape[-1]), cfg.patch_size)
        proj = resample_patch_embed(proj.float(), [cfg.patch_size, cfg.patch_size])
    sd["patch_embed.proj.weight"] = proj
    if "pos_embed" in sd:
        grid, side = _pos_grid(sd.pop("pos_embed"), spec)
        sd["pos_embed_search"] = _resize_pos(grid, cfg.search_grid)
        sd["pos_embed_template"] = _resize_pos(grid, cfg.template_grid)
        report.pos_grid = (side, cfg.search_grid, cfg.template_grid)
    own = encoder.state_dict()
    bad = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in sd.items()
        if k in own and v.shape != own[k].shape
    ]
    if bad:
        raise PretrainedError(
            f"pretrained weights {spec!r} do not fit the encoder ({len(bad)} shape mismatches, "
            f"first: {bad[0]}): check encoder_dim/mlp_ratio or use -P pretrained=none"
        )
    return sd


def load_state_dict_spec(spec: str) -> dict[str, Tensor]:
    """The raw state dict named by `spec` (file path or timm model name)."""
    return _from_file(Path(spec).expanduser()) if _looks_like_path(spec) else _from_timm(spec)


def load_pretrained(encoder: nn.Module, spec: str, cfg: ModelConfig) -> PretrainedReport:
    """Load `spec` (timm name or weights file) into a `ViTEncoder`; raises PretrainedError."""
    report = PretrainedReport(source=spec)
    sd = adapt_state_dict(load_state_dict_spec(spec), encoder, cfg, spec, report)
    result = encoder.load_state_dict(sd, strict=False)
    report.missing, report.unexpected = list(result.missing_keys), list(result.unexpected_keys)
    report.loaded = len(sd) - len(report.unexpected)
    if report.loaded == 0:
        raise PretrainedError(f"pretrained weights {spec!r} share no parameter with the encoder: {_FIX}")
    if report.missing:
        log.warning(
            "pretrained %s: %d encoder tensors keep their fresh init (e.g. %s)",
            spec,
            len(report.missing),
            ", ".join(report.missing[:3]),
        )
    if report.unexpected:
        log.warning(
            "pretrained %s: %d tensors ignored (e.g. %s)",
            spec,
            len(report.unexpected),
            ", ".join(report.unexpected[:3]),
        )
    log.info(
        "pretrained %s: %d tensors loaded, patch %s, pos grid %s",
        spec,
        report.loaded,
        report.patch_resampled,
        report.pos_grid,
    )
    return report


__all__ = [
    "PretrainedError",
    "PretrainedReport",
    "adapt_state_dict",
    "load_pretrained",
    "load_state_dict_spec",
]
