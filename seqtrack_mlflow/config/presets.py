"""The presets (the official configurations and a CPU-sized one) and the settings a training run stores."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from seqtrack_mlflow.config.declare import ConfigError
from seqtrack_mlflow.config.settings import DataConfig, ModelConfig, SamplingConfig, TrainConfig

_VIT_B = dict(encoder_dim=768, encoder_depth=12, encoder_heads=12)
_VIT_L = dict(encoder_dim=1024, encoder_depth=24, encoder_heads=16)

# name -> (model overrides, train overrides). A preset may set any model or training setting.
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
    # decoder writing (cx, cy, w, h) tokens) with a 4-block, 64-wide encoder at the official patch size
    # 16, trained from scratch in minutes on 2 cores. A 128-px search crop (8x8 grid) and 64-px
    # templates (4x4 grids, the target about one patch): 96 encoder tokens instead of 192, and a
    # 128-wide decoder; together about 0.38x the training FLOPs of 128-px templates with the official
    # 256-wide decoder. 64 bins (2 crop pixels each) instead of 4000: with tens of thousands of samples
    # each of 4000 classes would see a handful of positives, too few to learn to localise. Batch 8:
    # twice the optimiser steps per sample, which is what a from-scratch model needs before its training
    # IoU takes off. The encoder's position tables start as MAE's 2-D sin/cos (the official encoder's
    # starting point) instead of noise: the model no longer spends its first samples learning where its
    # patches are, and 15k samples (3 x 5,000, the learning rate dropped for the last epoch) reach on
    # the demo's test split about what 32k did from noise, in half the minutes (README, "Presets" and
    # "Time to accuracy": on a held-out set they stay 5 AUC points short).
    "tiny": (
        dict(
            encoder_dim=64,
            encoder_depth=4,
            encoder_heads=4,
            template_size=64,
            search_size=128,
            patch_size=16,
            decoder_dim=128,
            decoder_heads=4,
            decoder_ffn=512,
            bins=64,
            pretrained="none",
            position_init="sincos",
        ),
        dict(
            batch_size=8,
            lr=5e-4,
            encoder_lr_mult=1.0,
            epochs=3,
            samples_per_epoch=5000,
            lr_drop_epoch=2,
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
    """dataclasses.replace that ignores None values (= "unset": keep the value `cfg` has)."""
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def given_for(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """The values of `cls`'s fields that are set (not None) in a flat name -> value mapping."""
    return {f.name: values[f.name] for f in dataclasses.fields(cls) if values.get(f.name) is not None}


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
        """Every setting under its own flat name, plus the derived encoder token count."""
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
    """A preset with the given settings applied (None = the preset's value), validated.

    An explicit value always wins, 0 included: `patch_size=0` is refused, never read as "unset".
    """
    model, train = preset(preset_name)
    model = replace(model, **model_overrides)
    train = replace(train, **train_overrides)
    model.validate()
    train.validate()
    return TrainSettings(preset_name, model, train, sampling or SamplingConfig(), data)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Rebuild a settings dataclass, ignoring keys it does not know (older/newer checkpoints)."""
    names = {f.name for f in dataclasses.fields(cls)}
    # An empty string stored for an optional folder (older checkpoints) means unset.
    optional = {f.name for f in dataclasses.fields(cls) if f.default is None}
    return cls(**{k: (None if v == "" and k in optional else v) for k, v in values.items() if k in names})
