"""Settings as frozen dataclasses: model, data, training, tracking, and the presets.

Settings travel explicitly through the code (no global config object). `validate_*` functions raise
`ConfigError` with a one-line message that names the setting and the fix; the CLI prints it and exits 2.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A user-facing settings mistake: one line naming the setting and the fix."""


@dataclass(frozen=True)
class ModelConfig:
    """SeqTrack architecture. Defaults are the official B256 configuration (REFERENCE.md)."""

    encoder_dim: int = 768
    encoder_depth: int = 12
    encoder_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    template_size: int = 256
    search_size: int = 256
    num_templates: int = 2
    decoder_dim: int = 256
    decoder_heads: int = 8
    decoder_layers: int = 2
    decoder_ffn: int = 1024
    decoder_dropout: float = 0.1
    bins: int = 4000
    # Encoder initialisation: a timm model name (e.g. "vit_base_patch16_224.mae"), a local weights
    # file (.pth/.pt/.bin/.safetensors), or "none" (train from scratch).
    pretrained: str = "none"

    @property
    def end_token(self) -> int:
        return self.bins

    @property
    def start_token(self) -> int:
        return self.bins + 1

    @property
    def vocab_size(self) -> int:
        return self.bins + 2

    @property
    def search_grid(self) -> int:
        return self.search_size // self.patch_size

    @property
    def template_grid(self) -> int:
        return self.template_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        """Encoder tokens per sample: search grid plus every template grid."""
        return self.search_grid**2 + self.num_templates * self.template_grid**2


@dataclass(frozen=True)
class SamplingConfig:
    """How training samples are drawn and cropped (REFERENCE.md, "Sampling and processing")."""

    template_factor: float = 4.0
    search_factor: float = 4.0
    center_jitter: float = 3.5
    scale_jitter: float = 0.5
    max_interval: int = 400
    min_frames: int = 20
    min_visible: int = 7  # "more than 6 visible frames"
    grayscale_prob: float = 0.05
    flip_prob: float = 0.5
    brightness_jitter: float = 0.2


@dataclass(frozen=True)
class DataConfig:
    """Where LaSOT comes from and which classes are used."""

    source: str = "auto"  # auto | local | hub | synthetic
    lasot_root: str = ""
    classes: str = "airplane,random"
    cache_dir: str = ""  # hub / synthetic tree location; "" = the default cache folder
    synthetic_sequences: int = 4  # per class, for source=synthetic
    synthetic_frames: int = 60
    synthetic_size: str = "320x240"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping (official values where REFERENCE.md gives them)."""

    epochs: int = 500
    samples_per_epoch: int = 60000
    batch_size: int = 16
    lr: float = 1e-4
    encoder_lr_mult: float = 0.1
    weight_decay: float = 1e-4
    lr_drop_epoch: int = 400
    lr_gamma: float = 0.1
    grad_clip: float = 0.1
    amp: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    workers: int = 0
    log_every: int = 50
    seed: int = 0
    system_metrics: bool = True


@dataclass(frozen=True)
class TrackerConfig:
    """Inference settings (REFERENCE.md, "Inference")."""

    search_factor: float = 4.0
    template_factor: float = 4.0
    window_penalty: bool = True
    update_interval: int = 450
    update_threshold: float = 0.6
    max_frames: int = 0  # 0 = whole sequence


_VIT_B = dict(encoder_dim=768, encoder_depth=12, encoder_heads=12)
_VIT_L = dict(encoder_dim=1024, encoder_depth=24, encoder_heads=16)

# name -> (model overrides, train overrides)
PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "b256": (
        dict(_VIT_B, template_size=256, search_size=256, pretrained="vit_base_patch16_224.mae"),
        dict(batch_size=16),
    ),
    "b384": (
        dict(_VIT_B, template_size=384, search_size=384, pretrained="vit_base_patch16_224.mae"),
        dict(batch_size=8),
    ),
    "l256": (
        dict(_VIT_L, template_size=256, search_size=256, pretrained="vit_large_patch16_224.mae"),
        dict(batch_size=8),
    ),
    "l384": (
        dict(_VIT_L, template_size=384, search_size=384, pretrained="vit_large_patch16_224.mae"),
        dict(batch_size=8),
    ),
    # A CPU-sized SeqTrack: the same structure (ViT encoder over [search, t1, t2], 2-layer causal
    # decoder writing (cx, cy, w, h) tokens) with a 4-block, 64-wide encoder and 128-px crops at the
    # official patch size 16 (8x8 grids, 192 encoder tokens), trained from scratch in minutes on 2
    # cores. 64 bins (2 crop pixels each) instead of 4000: with ~16k training samples each of 4000
    # classes would see a handful of positives, too few to learn to localise. Measured on synthetic
    # LaSOT: the training IoU takes off after ~10k samples (README, "Presets").
    "tiny": (
        dict(
            encoder_dim=64,
            encoder_depth=4,
            encoder_heads=4,
            template_size=128,
            search_size=128,
            patch_size=16,
            bins=64,
            pretrained="none",
        ),
        dict(
            batch_size=16,
            lr=5e-4,
            encoder_lr_mult=1.0,
            epochs=5,
            samples_per_epoch=3200,
            lr_drop_epoch=4,
            grad_clip=1.0,
        ),
    ),
}


def preset(name: str) -> tuple[ModelConfig, TrainConfig]:
    """Model and training settings of a named preset."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(sorted(PRESETS))}")
    model_over, train_over = PRESETS[name]
    return ModelConfig(**model_over), TrainConfig(**train_over)


def replace(cfg: Any, **overrides: Any) -> Any:
    """dataclasses.replace that ignores None values (= "keep the preset's value")."""
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class TrainSettings:
    """Everything a training run depends on; stored in every checkpoint as plain values."""

    preset: str
    model: ModelConfig
    train: TrainConfig
    sampling: SamplingConfig = dataclasses.field(default_factory=SamplingConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "model": to_dict(self.model),
            "train": to_dict(self.train),
            "sampling": to_dict(self.sampling),
            "data": to_dict(self.data),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainSettings:
        return cls(
            preset=values["preset"],
            model=from_dict(ModelConfig, values["model"]),
            train=from_dict(TrainConfig, values["train"]),
            sampling=from_dict(SamplingConfig, values.get("sampling", {})),
            data=from_dict(DataConfig, values.get("data", {})),
        )

    def params(self) -> dict[str, Any]:
        """Every setting under one flat name (the CLI / MLproject option name where there is one)."""
        flat: dict[str, Any] = {"preset": self.preset, "num_tokens": self.model.num_tokens}
        for part in (self.model, self.train, self.sampling, self.data):
            flat.update(to_dict(part))
        return flat


def build_settings(
    preset_name: str,
    model_overrides: dict[str, Any],
    train_overrides: dict[str, Any],
    data: DataConfig,
    sampling: SamplingConfig | None = None,
) -> TrainSettings:
    """A preset with overrides applied (None, 0 and "" mean "the preset's value"), validated."""

    def given(values: dict[str, Any]) -> dict[str, Any]:
        return {
            k: v for k, v in values.items() if v not in (None, "") and not (v == 0 and type(v) is not bool)
        }

    model, train = preset(preset_name)
    model = dataclasses.replace(model, **given(model_overrides))
    train = dataclasses.replace(train, **given(train_overrides))
    validate_model(model)
    validate_train(train)
    return TrainSettings(preset_name, model, train, sampling or SamplingConfig(), data)


def validate_model(cfg: ModelConfig) -> None:
    """Check the geometric constraints before any work starts."""
    if cfg.patch_size < 1:
        raise ConfigError(f"patch_size must be >= 1, got {cfg.patch_size}")
    for name in ("template_size", "search_size"):
        size = getattr(cfg, name)
        if size < 1:
            raise ConfigError(f"{name} must be >= 1, got {size}")
        if size % cfg.patch_size:
            divisors = [p for p in range(1, size + 1) if size % p == 0 and p <= 32]
            raise ConfigError(
                f"patch_size {cfg.patch_size} does not divide {name} {size}: "
                f"use a patch_size in {divisors} or change {name}"
            )
    if cfg.encoder_dim % cfg.encoder_heads:
        raise ConfigError(
            f"encoder_dim {cfg.encoder_dim} is not a multiple of encoder_heads {cfg.encoder_heads}"
        )
    if cfg.bins < 2:
        raise ConfigError(f"bins must be >= 2, got {cfg.bins}")


def validate_train(cfg: TrainConfig) -> None:
    checks = [
        ("epochs", cfg.epochs >= 1, "a positive number of epochs"),
        ("samples_per_epoch", cfg.samples_per_epoch >= 1, "a positive number"),
        ("batch_size", cfg.batch_size >= 1, "a positive number"),
        ("lr", cfg.lr > 0, "a positive learning rate"),
        ("log_every", cfg.log_every >= 1, "a positive number of samples"),
        ("workers", cfg.workers >= 0, "0 or more"),
        ("grad_clip", cfg.grad_clip >= 0, "0 (off) or a positive norm"),
    ]
    for name, ok, want in checks:
        if not ok:
            raise ConfigError(f"{name}={getattr(cfg, name)} is invalid: use {want}")


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Rebuild a settings dataclass, ignoring keys it does not know (older/newer checkpoints)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "PRESETS",
    "SamplingConfig",
    "TrackerConfig",
    "TrainConfig",
    "TrainSettings",
    "build_settings",
    "from_dict",
    "preset",
    "replace",
    "to_dict",
    "validate_model",
    "validate_train",
]
