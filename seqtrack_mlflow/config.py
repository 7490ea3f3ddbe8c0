"""Settings: the one declaration of every setting, the presets, and validation.

Each setting is a field of a frozen dataclass declared with `setting(...)`: its type (the annotation),
default, help text, which entry points take it, and what "unset" means there. The click options
(`cli.py`) and `MLproject` (`seqtrack-mlflow mlproject > MLproject`) are generated from these fields, so
a new setting is one declaration here plus its use.

"Unset" is `None`, never a magic 0: in `main` and `train` an unset model or training setting takes the
preset's value (`preset=True`); in the steps listed in `inherit` an unset setting takes the value of the
run it builds on (the `select_data` run for data settings, the training run in `evaluate`).

Settings travel explicitly through the code (no global config object). `validate_*` functions raise
`ConfigError` with a one-line message that names the setting and the fix; the CLI prints it and exits 2.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

STEPS = ("main", "select_data", "train", "evaluate", "sweep")
PRESET_STEPS = ("main", "train", "sweep")  # the steps that take a preset
_TRAINING = ("main", "train", "sweep")
_DATA = ("main", "select_data", "train", "evaluate", "sweep")
_EVAL = ("main", "evaluate", "sweep")


class ConfigError(ValueError):
    """A user-facing settings mistake: one line naming the setting and the fix."""


def setting(
    default: Any,
    help: str,  # noqa: A002 - the click/argparse name
    *,
    steps: tuple[str, ...] = (),
    preset: bool = False,
    inherit: tuple[str, ...] = (),
    choices: tuple[str, ...] = (),
    unset: str = "",
    required: tuple[str, ...] = (),
) -> Any:
    """A settings field. `steps`: the entry points that take it as an option (empty: internal, set by
    presets only); `required`: those where it must be given. `unset`: what `None` means for a field
    whose own default is None."""
    return dataclasses.field(
        default=default,
        metadata={
            "help": help,
            "steps": steps,
            "preset": preset,
            "inherit": inherit,
            "choices": choices,
            "unset": unset,
            "required": required,
        },
    )


def data_setting(default: Any, help: str, **kwargs: Any) -> Any:  # noqa: A002
    """A data setting: taken by every entry point; unset in train/evaluate = the earlier run's value."""
    return setting(default, help, steps=_DATA, inherit=("train", "evaluate"), **kwargs)


@dataclass(frozen=True)
class ModelConfig:
    """SeqTrack architecture. Defaults are the official B256 configuration."""

    encoder_dim: int = setting(768, "ViT width")
    encoder_depth: int = setting(12, "ViT blocks")
    encoder_heads: int = setting(12, "ViT attention heads")
    mlp_ratio: float = setting(4.0, "ViT MLP width / width")
    patch_size: int = setting(16, "ViT patch size; must divide the crop sizes", steps=_TRAINING, preset=True)
    template_size: int = setting(256, "template crop size (pixels)", steps=_TRAINING, preset=True)
    search_size: int = setting(256, "search crop size (pixels)", steps=_TRAINING, preset=True)
    num_templates: int = setting(2, "templates per sample")
    decoder_dim: int = setting(256, "decoder width")
    decoder_heads: int = setting(8, "decoder attention heads")
    decoder_layers: int = setting(2, "decoder layers")
    decoder_ffn: int = setting(1024, "decoder feed-forward width")
    decoder_dropout: float = setting(0.1, "decoder dropout")
    bins: int = setting(4000, "coordinate bins (vocabulary = bins + END + START)")
    pretrained: str = setting(
        "none",
        "encoder init: a timm model name, a local weights file (official SeqTrack files included), "
        "or none (from scratch)",
        steps=_TRAINING,
        preset=True,
    )

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
    """How training samples are drawn and cropped (the official sampler and processing)."""

    template_factor: float = setting(4.0, "template crop side / target size")
    search_factor: float = setting(4.0, "search crop side / target size")
    center_jitter: float = setting(3.5, "search centre jitter")
    scale_jitter: float = setting(0.5, "search scale jitter")
    max_interval: int = setting(400, "max frame gap between templates and search")
    min_frames: int = setting(20, "frames a training sequence needs")
    min_visible: int = setting(7, "visible frames a training sequence needs (official: more than 6)")
    grayscale_prob: float = setting(0.05, "grayscale probability (joint for the sample)")
    flip_prob: float = setting(0.5, "horizontal flip probability, drawn per crop")
    brightness_jitter: float = setting(0.2, "brightness factor range (1 +- this)")


@dataclass(frozen=True)
class DataConfig:
    """Where LaSOT comes from and which classes are used. Every entry point takes these; in `train` and
    `evaluate` an unset one is the value of the run they build on (`data_setting`)."""

    source: str = data_setting(
        "auto",
        "LaSOT source: auto = local when a root is given, else the Hugging Face hub",
        choices=("auto", "local", "hub", "synthetic"),
    )
    lasot_root: str | None = data_setting(None, "LaSOT root folder for source=local", unset="$LASOT_ROOT")
    classes: str = data_setting(
        "airplane,random",
        "comma-separated classes; 'random' = one class drawn with the seed; 'all' = every class",
    )
    cache_dir: str | None = data_setting(
        None, "where hub downloads and synthetic data go", unset="$SEQTRACK_CACHE or ~/.cache/seqtrack-mlflow"
    )
    synthetic_sequences: int = data_setting(4, "sequences per class for source=synthetic")
    synthetic_frames: int = data_setting(60, "frames per sequence for source=synthetic")
    synthetic_size: str = data_setting("320x240", "frame size WxH for source=synthetic")
    verify_frames: bool = setting(
        False,
        "decode every frame of the selected classes in select_data to find damaged JPEGs "
        "(about 3 s per 1000 1280x720 frames per core; all of LaSOT's 3.5 M frames: about 3 core-hours)",
        steps=("main", "select_data", "train", "sweep"),
        inherit=("train",),
    )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping (official values by default)."""

    seed: int = setting(
        0,
        "seeds the class draw, sampling, init and dropout (sweep: and the trials' parameters)",
        steps=("main", "select_data", "train", "sweep"),
        inherit=("train",),
    )
    epochs: int = setting(500, "epochs", steps=_TRAINING, preset=True)
    samples_per_epoch: int = setting(60000, "samples per epoch (all processes)", steps=_TRAINING, preset=True)
    batch_size: int = setting(16, "batch size per process", steps=_TRAINING, preset=True)
    lr: float = setting(1e-4, "base learning rate (AdamW)", steps=_TRAINING, preset=True)
    encoder_lr_mult: float = setting(0.1, "encoder learning rate / base rate", steps=_TRAINING, preset=True)
    weight_decay: float = setting(1e-4, "AdamW weight decay", steps=_TRAINING, preset=True)
    lr_drop_epoch: int = setting(400, "StepLR step (epochs)", steps=_TRAINING, preset=True)
    lr_gamma: float = setting(0.1, "StepLR factor", steps=_TRAINING, preset=True)
    grad_clip: float = setting(0.1, "gradient norm clip (0 = off)", steps=_TRAINING, preset=True)
    amp: bool = setting(False, "bf16 autocast (CUDA only)", steps=_TRAINING, preset=True)
    device: str = setting("auto", "auto, cpu, cuda or cuda:N", steps=STEPS[:1] + STEPS[2:], preset=True)
    workers: int = setting(0, "DataLoader worker processes", steps=_TRAINING, preset=True)
    log_every: int = setting(50, "samples between reports", steps=_TRAINING, preset=True)
    system_metrics: bool = setting(
        True, "log MLflow system metrics (CPU, memory, GPU)", steps=_TRAINING, preset=True
    )
    console: str = setting(
        "reports",
        "console output: reports = the 6-line report every log_every samples (and a progress bar on a "
        "terminal); bar = only the progress bar (training_log.txt always has the reports)",
        steps=_TRAINING,
        choices=("reports", "bar"),
    )


@dataclass(frozen=True)
class TrackerConfig:
    """Inference and evaluation settings (the official tracker's LaSOT values by default)."""

    eval_search_factor: float = setting(4.0, "tracker search crop side / target size")
    eval_template_factor: float = setting(4.0, "tracker template crop side / target size")
    window_penalty: bool = setting(True, "Hann window on the cx, cy tokens", steps=_EVAL)
    update_interval: int = setting(450, "template update interval (frames)", steps=_EVAL)
    update_threshold: float = setting(0.6, "template update confidence threshold", steps=_EVAL)
    max_frames: int | None = setting(None, "frames tracked per sequence", steps=_EVAL, unset="all")
    split: str = setting("test", "which sequences to track", steps=_EVAL, choices=("test", "train", "all"))
    eval_batch: int = setting(
        1,
        "sequences tracked at once in lockstep (one batched encode + decode per frame); same boxes as 1",
        steps=("main", "evaluate"),
    )
    eval_precision: str = setting(
        "fp32",
        "encoder precision when tracking: int8 = dynamic int8 linear layers (CPU), bf16 = bfloat16 "
        "(CPU with AVX512-BF16/AMX, or GPU); changes the numbers slightly",
        steps=("main", "evaluate"),
        choices=("fp32", "int8", "bf16"),
    )


@dataclass(frozen=True)
class RunConfig:
    """What a step runs on and where it writes: the preset, inputs from other runs, the output folder."""

    preset: str = setting(
        "tiny",
        "model/training preset (evaluate: checks an official file's shapes against it)",
        steps=(*_TRAINING, "evaluate"),
        inherit=("train", "evaluate"),
    )  # choices: PRESETS, below
    output_dir: str = setting("outputs", "local run folders", steps=STEPS)
    data: str | None = setting(
        None,
        "the select_data run (id or runs:/ URI) whose index to use",
        steps=("train", "evaluate"),
        unset="select the data in this run",
    )
    resume: str | None = setting(
        None,
        "checkpoint file, runs:/<id>/checkpoints/epoch_N.ckpt, or a train run id",
        steps=("train",),
        unset="start from scratch",
    )
    checkpoint: str | None = setting(
        None,
        "checkpoint file, runs:/<id>/checkpoints/epoch_N.ckpt, a train run id, or an official "
        "SeqTrack release file",
        steps=("evaluate",),
        required=("evaluate",),
    )


@dataclass(frozen=True)
class SweepConfig:
    """The `sweep` entry point's own settings: an Optuna study of train + evaluate trials."""

    trials: int = setting(
        8, "trials this process runs (with a shared storage: added to the study's)", steps=("sweep",)
    )
    storage: str | None = setting(
        None,
        "Optuna storage (an SQLAlchemy URL: sqlite:///sweep.db, postgresql://user:pw@host/db) shared by "
        "every process that runs trials of the study",
        steps=("sweep",),
        unset="an in-memory study of this process only",
    )
    study_name: str = setting("seqtrack-sweep", "the Optuna study (loaded if it exists)", steps=("sweep",))
    space: str | None = setting(
        None,
        "the search space: a JSON file or JSON text, {setting: {low, high, log} | {choices} | [choices]}",
        steps=("sweep",),
        unset="the default space for the preset (README, Sweeps)",
    )
    prune_startup_trials: int = setting(
        5, "trials that must finish before the median rule prunes others", steps=("sweep",)
    )
    prune_warmup_epochs: int = setting(
        1, "epochs every trial trains before it may be pruned", steps=("sweep",)
    )


SETTINGS_CLASSES: tuple[type, ...] = (
    RunConfig,
    TrainConfig,
    ModelConfig,
    SamplingConfig,
    DataConfig,
    TrackerConfig,
    SweepConfig,
)


@dataclass(frozen=True)
class Setting:
    """One declared setting, as the CLI and MLproject generators see it."""

    name: str
    owner: type
    type: type  # int, float, bool or str
    default: Any
    help: str
    steps: tuple[str, ...]
    preset: bool
    inherit: tuple[str, ...]
    choices: tuple[str, ...]
    unset: str
    required: tuple[str, ...]

    def default_in(self, step: str) -> Any:
        """The option's default in `step`: None where unset means the preset's or an earlier run's value."""
        if (self.preset and step in PRESET_STEPS) or step in self.inherit:
            return None
        return self.default

    def unset_meaning(self, step: str) -> str:
        if self.preset and step in PRESET_STEPS:
            return "the preset's value"
        if step in self.inherit:
            if step == "evaluate":
                return "the training run's value"
            return "the resumed checkpoint's or the data run's value, else " + (
                self.unset or repr(self.default)
            )
        return self.unset


def _plain_type(annotation: Any) -> type:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def declared_settings() -> Iterator[Setting]:
    """Every settings field of every settings class, in declaration order."""
    for cls in SETTINGS_CLASSES:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            meta = f.metadata
            choices = tuple(sorted(PRESETS)) if (cls, f.name) == (RunConfig, "preset") else meta["choices"]
            yield Setting(
                f.name,
                cls,
                _plain_type(hints[f.name]),
                f.default,
                meta["help"],
                meta["steps"],
                meta["preset"],
                meta["inherit"],
                choices,
                meta["unset"],
                meta["required"],
            )


def step_settings(step: str) -> list[Setting]:
    """The settings `step` takes as options."""
    return [s for s in declared_settings() if step in s.steps]


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
    validate_model(model)
    validate_train(train)
    return TrainSettings(preset_name, model, train, sampling or SamplingConfig(), data)


def validate_model(cfg: ModelConfig) -> None:
    """Check the geometric constraints before any work starts."""
    if cfg.patch_size < 1:
        raise ConfigError(f"patch_size={cfg.patch_size} is invalid: use a positive divisor of the crop sizes")
    for name in ("template_size", "search_size"):
        size = getattr(cfg, name)
        if size < 1:
            raise ConfigError(f"{name}={size} is invalid: use a positive number of pixels")
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
        ("encoder_lr_mult", cfg.encoder_lr_mult >= 0, "0 (frozen encoder) or a positive factor"),
        ("weight_decay", cfg.weight_decay >= 0, "0 or more"),
        ("lr_drop_epoch", cfg.lr_drop_epoch >= 1, "a positive number of epochs"),
        ("lr_gamma", cfg.lr_gamma > 0, "a positive factor"),
        ("log_every", cfg.log_every >= 1, "a positive number of samples"),
        ("workers", cfg.workers >= 0, "0 or more"),
        ("grad_clip", cfg.grad_clip >= 0, "0 (off) or a positive norm"),
    ]
    for name, ok, want in checks:
        if not ok:
            raise ConfigError(f"{name}={getattr(cfg, name)} is invalid: use {want}")


def validate_tracker(cfg: TrackerConfig) -> None:
    checks = [
        ("update_interval", cfg.update_interval >= 1, "1 or more frames"),
        ("max_frames", cfg.max_frames is None or cfg.max_frames >= 1, "1 or more (unset = all frames)"),
        ("eval_search_factor", cfg.eval_search_factor > 0, "a positive factor"),
        ("eval_template_factor", cfg.eval_template_factor > 0, "a positive factor"),
        ("eval_batch", cfg.eval_batch >= 1, "1 or more sequences"),
        ("eval_precision", cfg.eval_precision in ("fp32", "int8", "bf16"), "fp32, int8 or bf16"),
    ]
    for name, ok, want in checks:
        if not ok:
            raise ConfigError(f"{name}={getattr(cfg, name)} is invalid: use {want}")


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Rebuild a settings dataclass, ignoring keys it does not know (older/newer checkpoints)."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: (None if v == "" and k in ("lasot_root", "cache_dir") else v) for k, v in values.items()}
    return cls(**{k: v for k, v in values.items() if k in names})


__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "PRESETS",
    "RunConfig",
    "SamplingConfig",
    "Setting",
    "SweepConfig",
    "TrackerConfig",
    "TrainConfig",
    "TrainSettings",
    "build_settings",
    "declared_settings",
    "from_dict",
    "given_for",
    "preset",
    "replace",
    "step_settings",
    "to_dict",
    "validate_model",
    "validate_tracker",
    "validate_train",
]
