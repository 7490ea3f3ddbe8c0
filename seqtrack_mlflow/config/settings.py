"""The settings dataclasses: every setting of the project, declared once (`declare.setting`).

Settings travel explicitly through the code (no global config object). `validate()` on each class raises
`ConfigError` with a one-line message that names the setting and the fix; the CLI prints it and exits 2.
"""

from __future__ import annotations

from dataclasses import dataclass

from seqtrack_mlflow.config.data import DataConfig, parse_size  # noqa: F401 - parse_size re-exported
from seqtrack_mlflow.config.declare import (
    STEPS,
    TRAINING_STEPS,
    ConfigError,
    Validated,
    check_fields,
    setting,
)
from seqtrack_mlflow.config.tracker import TrackerConfig
from seqtrack_mlflow.config.video import VideoConfig

POSITION_INITS = ("trunc_normal", "sincos")  # `ModelConfig.position_init`


@dataclass(frozen=True)
class ModelConfig(Validated):
    """SeqTrack architecture. Defaults are the official B256 configuration."""

    encoder_dim: int = setting(768, "ViT width")
    encoder_depth: int = setting(12, "ViT blocks")
    encoder_heads: int = setting(12, "ViT attention heads")
    mlp_ratio: float = setting(4.0, "ViT MLP width / width")
    patch_size: int = setting(
        16, "ViT patch size; must divide the crop sizes", steps=TRAINING_STEPS, preset=True
    )
    template_size: int = setting(256, "template crop size (pixels)", steps=TRAINING_STEPS, preset=True)
    search_size: int = setting(256, "search crop size (pixels)", steps=TRAINING_STEPS, preset=True)
    num_templates: int = setting(2, "templates per sample")
    decoder_dim: int = setting(256, "decoder width")
    decoder_heads: int = setting(8, "decoder attention heads")
    decoder_layers: int = setting(2, "decoder layers")
    decoder_ffn: int = setting(1024, "decoder feed-forward width")
    decoder_dropout: float = setting(0.1, "decoder dropout")
    position_init: str = setting(
        "trunc_normal",
        "encoder position tables of a from-scratch model: trunc_normal (the official from-scratch init) "
        "or sincos (the 2-D sin/cos table MAE's weights carry, which the official encoder starts from)",
        choices=POSITION_INITS,
    )
    bins: int = setting(4000, "coordinate bins (vocabulary = bins + END + START)")
    pretrained: str = setting(
        "none",
        "encoder init: a timm model name, a local weights file (official SeqTrack files included), "
        "a checkpoint of ours by runs:/<id>/checkpoints/epoch_N.ckpt or a registered model "
        "models:/<name>/<version> (or models:/<name>@<alias>), or none (from scratch)",
        steps=TRAINING_STEPS,
        preset=True,
        sweep=False,
    )

    def validate(self) -> None:
        """The geometric constraints, before any work starts."""
        check_fields(self)
        if self.patch_size < 1:
            raise ConfigError(
                f"patch_size={self.patch_size} is invalid: use a positive divisor of the crop sizes"
            )
        for name in ("template_size", "search_size"):
            size = getattr(self, name)
            if size < 1:
                raise ConfigError(f"{name}={size} is invalid: use a positive number of pixels")
            if size % self.patch_size:
                divisors = [p for p in range(1, size + 1) if size % p == 0 and p <= 32]
                raise ConfigError(
                    f"patch_size {self.patch_size} does not divide {name} {size}: "
                    f"use a patch_size in {divisors} or change {name}"
                )
        if self.encoder_dim % self.encoder_heads:
            raise ConfigError(
                f"encoder_dim {self.encoder_dim} is not a multiple of encoder_heads {self.encoder_heads}"
            )
        if self.bins < 2:
            raise ConfigError(f"bins must be >= 2, got {self.bins}")

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
class SamplingConfig(Validated):
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
class TrainConfig(Validated):
    """Optimisation and bookkeeping (official values by default)."""

    seed: int = setting(
        0,
        "seeds the class draw, sampling, init and dropout",
        step_help={"sweep": "seeds the class draw, sampling, init, dropout and the trials' parameters"},
        steps=("main", "select_data", "train", "sweep"),
        inherit=("train",),
    )
    epochs: int = setting(
        500,
        "epochs",
        steps=TRAINING_STEPS,
        preset=True,
        resume=True,
        check=(lambda v: v >= 1, "a positive number of epochs"),
    )
    samples_per_epoch: int = setting(
        60000,
        "samples per epoch (all processes)",
        steps=TRAINING_STEPS,
        preset=True,
        check=(lambda v: v >= 1, "a positive number"),
    )
    batch_size: int = setting(
        16,
        "batch size per process",
        steps=TRAINING_STEPS,
        preset=True,
        check=(lambda v: v >= 1, "a positive number"),
    )
    lr: float = setting(
        1e-4,
        "base learning rate (AdamW)",
        steps=TRAINING_STEPS,
        preset=True,
        check=(lambda v: v > 0, "a positive learning rate"),
    )
    encoder_lr_mult: float = setting(
        0.1,
        "encoder learning rate / base rate",
        steps=TRAINING_STEPS,
        preset=True,
        check=(lambda v: v >= 0, "0 (frozen encoder) or a positive factor"),
    )
    weight_decay: float = setting(
        1e-4, "AdamW weight decay", steps=TRAINING_STEPS, preset=True, check=(lambda v: v >= 0, "0 or more")
    )
    lr_drop_epoch: int = setting(
        400,
        "StepLR step (epochs)",
        steps=TRAINING_STEPS,
        preset=True,
        resume=True,
        check=(lambda v: v >= 1, "a positive number of epochs"),
    )
    lr_gamma: float = setting(
        0.1,
        "StepLR factor",
        steps=TRAINING_STEPS,
        preset=True,
        resume=True,
        check=(lambda v: v > 0, "a positive factor"),
    )
    grad_clip: float = setting(
        0.1,
        "gradient norm clip (0 = off)",
        steps=TRAINING_STEPS,
        preset=True,
        check=(lambda v: v >= 0, "0 (off) or a positive norm"),
    )
    amp: bool = setting(
        False, "bf16 autocast (CUDA only)", steps=TRAINING_STEPS, preset=True, resume=True, sweep=False
    )
    device: str = setting(
        "auto",
        "auto, cpu, cuda or cuda:N",
        steps=tuple(s for s in STEPS if s != "select_data"),
        preset=True,
        resume=True,
        sweep=False,
    )
    workers: int = setting(
        0,
        "DataLoader worker processes",
        steps=TRAINING_STEPS,
        preset=True,
        resume=True,
        sweep=False,
        check=(lambda v: v >= 0, "0 or more"),
    )
    log_every: int = setting(
        50,
        "samples between reports",
        steps=TRAINING_STEPS,
        preset=True,
        resume=True,
        sweep=False,
        check=(lambda v: v >= 1, "a positive number of samples"),
    )
    system_metrics: bool = setting(
        True,
        "log MLflow system metrics (CPU, memory, GPU)",
        steps=TRAINING_STEPS,
        preset=True,
        resume=True,
        sweep=False,
    )
    keep_checkpoints: int | None = setting(
        None,
        "epoch_N.ckpt kept in the run: the last N plus the best by epoch IoU (the others are deleted)",
        steps=TRAINING_STEPS,
        unset="all",
        resume=True,
        sweep=False,
        check=(lambda v: v >= 1, "1 or more checkpoints (unset = keep all)"),
    )
    console: str = setting(
        "reports",
        "console output: reports = the 6-line report every log_every samples (and a progress bar on a "
        "terminal); bar = only the progress bar (training_log.txt always has the reports)",
        steps=TRAINING_STEPS,
        choices=("reports", "bar"),
        resume=True,
        sweep=False,
    )


@dataclass(frozen=True)
class RunConfig(Validated):
    """What a step runs on and where it writes: the preset, inputs from other runs, the output folder."""

    preset: str = setting(
        "tiny",
        "model/training preset",
        step_help=dict.fromkeys(
            ("evaluate", "track"), "the preset an official file's shapes are checked against"
        ),
        steps=(*TRAINING_STEPS, "evaluate", "track"),
        inherit=("train", "evaluate", "track"),
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
        "checkpoint file, runs:/<id>/checkpoints/epoch_N.ckpt, a train run id, a registered model "
        "models:/<name>/<version> (or models:/<name>@<alias>; its train run continues), or auto: this "
        "job's unfinished run (by run_key), if any",
        steps=("train", "main"),
        unset="start from scratch",
    )
    run_key: str | None = setting(
        None,
        "this job's name across restarts, tagged seqtrack.run_key: resume=auto finds its run by it",
        steps=("train", "main"),
        unset="$SLURM_JOB_ID under Slurm, else none",
        check=(lambda v: v == v.strip() != "" and not set(v) & set("'\"\\"), "a name without quotes"),
    )
    checkpoint: str | None = setting(
        None,
        "checkpoint file, runs:/<id>/checkpoints/epoch_N.ckpt, a train run id, a registered model "
        "models:/<name>/<version> (or models:/<name>@<alias>), or an official SeqTrack release file",
        steps=("evaluate", "track"),
        required=("evaluate", "track"),
    )
    model_name: str = setting(
        "seqtrack",
        "the Model Registry name the train run's tracker is registered under, a new version each run; "
        "none = not registered",
        step_help={
            "sweep": "the Model Registry name the best trial's tracker is registered under, a new "
            "version each run; none = not registered"
        },
        steps=("main", "sweep"),
        sweep=False,
        check=(lambda v: v == v.strip() != "" and not set(v) & set("/@:"), "a name without / @ : (or none)"),
    )


@dataclass(frozen=True)
class SweepConfig(Validated):
    """The `sweep` entry point's own settings: an Optuna study of train + evaluate trials."""

    trials: int = setting(
        8,
        "trials this process runs (with a shared storage: added to the study's)",
        steps=("sweep",),
        check=(lambda v: v >= 1, "1 or more trials"),
    )
    storage: str | None = setting(
        None,
        "Optuna storage (an SQLAlchemy URL: sqlite:///sweep.db, postgresql://user:pw@host/db) shared by "
        "every process that runs trials of the study",
        steps=("sweep",),
        unset="an in-memory study of this process only",
    )
    study_name: str = setting(
        "seqtrack-sweep",
        "the Optuna study (loaded if it exists)",
        steps=("sweep",),
        check=(lambda v: bool(v.strip()), "a non-empty name"),
    )
    space: str | None = setting(
        None,
        "the search space: a JSON file or JSON text, {setting: {low, high, log} | {choices} | [choices]}",
        steps=("sweep",),
        unset="the default space for the preset (README, Sweeps)",
    )
    prune_startup_trials: int = setting(
        5,
        "trials that must finish before the median rule prunes others",
        steps=("sweep",),
        check=(lambda v: v >= 0, "0 or more trials"),
    )
    prune_warmup_epochs: int = setting(
        1,
        "epochs every trial trains before it may be pruned",
        steps=("sweep",),
        check=(lambda v: v >= 0, "0 or more epochs"),
    )


SETTINGS_CLASSES: tuple[type, ...] = (
    VideoConfig,
    RunConfig,
    TrainConfig,
    ModelConfig,
    SamplingConfig,
    DataConfig,
    TrackerConfig,
    SweepConfig,
)
