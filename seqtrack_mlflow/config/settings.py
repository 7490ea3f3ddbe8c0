"""The settings dataclasses: every setting of the project, declared once (`declare.setting`).

Settings travel explicitly through the code (no global config object). `validate()` on each class raises
`ConfigError` with a one-line message that names the setting and the fix; the CLI prints it and exits 2.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from seqtrack_mlflow.config.data import DataConfig, parse_size  # noqa: F401 - parse_size re-exported
from seqtrack_mlflow.config.declare import (
    EVAL_STEPS,
    STEPS,
    TRACK_STEPS,
    TRAINING_STEPS,
    ConfigError,
    check_fields,
    setting,
)
from seqtrack_mlflow.config.video import VideoConfig

BENCHMARKS = ("lasot", "got10k_val", "got10k_test", "trackingnet_test", "lasot_ext")
# The official SeqTrack test-time template update interval per benchmark (lib/config/seqtrack/config.py,
# cfg.TEST.UPDATE_INTERVALS: LASOT 450, LASOT_EXTENSION_SUBSET 9999, GOT10K_TEST 1, TRACKINGNET 25; the
# threshold is 0.6 for all of them). GOT-10k val takes GOT10K_TEST's interval so that it predicts the
# test score (the official name got10k_val has no entry and would fall back to DEFAULT, 9999).
OFFICIAL_UPDATE_INTERVALS = {
    "lasot": 450,
    "lasot_ext": 9999,
    "got10k_val": 1,
    "got10k_test": 1,
    "trackingnet_test": 25,
}

BASELINE_TRACKERS = ("kcf", "csrt", "mil")  # OpenCV's classical trackers (evaluation/baselines.py)
BASELINES_USE = "a comma list of kcf, csrt, mil, or none"


class Validated:
    """`validate()`: every field's declared check (and a class's own cross-field rules, where it has them)."""

    def validate(self) -> None:
        check_fields(self)


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
class TrackerConfig(Validated):
    """Inference and evaluation settings (the official tracker's LaSOT values by default)."""

    eval_search_factor: float = setting(
        4.0, "tracker search crop side / target size", check=(lambda v: v > 0, "a positive factor")
    )
    eval_template_factor: float = setting(
        4.0, "tracker template crop side / target size", check=(lambda v: v > 0, "a positive factor")
    )
    window_penalty: bool = setting(True, "Hann window on the cx, cy tokens", steps=TRACK_STEPS)
    benchmark: str = setting(
        "lasot",
        "what evaluate tracks and scores: lasot (the selected classes, LaSOT protocol), got10k_val (AO, "
        "SR0.5, SR0.75), got10k_test and trackingnet_test (result files and the zip their servers take), "
        "lasot_ext (the 150 LaSOT extension sequences)",
        steps=("evaluate",),
        choices=BENCHMARKS,
        check=(lambda v: v in BENCHMARKS, ", ".join(BENCHMARKS)),
    )
    update_interval: int | None = setting(
        None,
        "template update interval (frames)",
        steps=TRACK_STEPS,
        unset="the benchmark's official interval: lasot 450, lasot_ext 9999, got10k_* 1, trackingnet_test 25",
        check=(lambda v: v >= 1, "1 or more frames"),
    )
    update_threshold: float = setting(0.6, "template update confidence threshold", steps=TRACK_STEPS)
    max_frames: int | None = setting(
        None,
        "frames tracked per sequence",
        step_help={"track": "frames of the video tracked"},
        steps=TRACK_STEPS,
        unset="all",
        sweep=False,
        check=(lambda v: v >= 1, "1 or more (unset = all frames)"),
    )
    split: str = setting(
        "test", "which sequences to track", steps=EVAL_STEPS, choices=("test", "train", "all")
    )
    eval_batch: int = setting(
        1,
        "sequences tracked at once in lockstep (one batched encode + decode per frame); same boxes as 1",
        steps=("main", "evaluate"),
        check=(lambda v: v >= 1, "1 or more sequences"),
    )
    eval_precision: str = setting(
        "fp32",
        "encoder precision when tracking: int8 = dynamic int8 linear layers (CPU), bf16 = bfloat16 "
        "(CPU with AVX512-BF16/AMX, or GPU); changes the numbers slightly",
        steps=("main", "evaluate", "track"),
        choices=("fp32", "int8", "bf16"),
        check=(lambda v: v in ("fp32", "int8", "bf16"), "fp32, int8 or bf16"),
    )
    backend: str = setting(
        "torch",
        "what runs the model when tracking: torch (PyTorch) or onnx (the model exported to ONNX, run by "
        "onnxruntime; eval_precision fp32 or int8; needs pip install -e '.[onnx]')",
        steps=("main", "evaluate", "track"),
        choices=("torch", "onnx"),
        sweep=False,
        check=(lambda v: v in ("torch", "onnx"), "torch or onnx"),
    )
    eval_videos: int = setting(
        2,
        "test sequences drawn as videos/<sequence>.gif (predicted and true boxes), the first ones; 0 = none",
        steps=("main", "evaluate"),
        sweep=False,
        check=(lambda v: v >= 0, "0 (none) or more sequences"),
    )
    baselines: str | None = setting(
        None,
        "OpenCV's classical trackers scored beside the model on the same frames from the same first box: a "
        "comma list of kcf, csrt, mil, or none (needs pip install -e '.[baselines]')",
        steps=EVAL_STEPS,
        unset="kcf,csrt,mil for the demo (source=synthetic, benchmark=lasot), else none",
        sweep=False,
        check=(
            lambda v: {n.strip().lower() for n in v.split(",")} <= {*BASELINE_TRACKERS, "none", ""},
            BASELINES_USE,
        ),
    )

    def resolved(self) -> TrackerConfig:
        """The settings as tracked with: an unset update interval is the benchmark's official one."""
        if self.update_interval is not None:
            return self
        return dataclasses.replace(self, update_interval=OFFICIAL_UPDATE_INTERVALS[self.benchmark])

    def validate(self) -> None:
        """The declared checks, and the precisions each backend has."""
        check_fields(self)
        self.check_backend_precision()

    def check_backend_precision(self) -> None:
        """bf16 has no onnxruntime path (its encoder is float32 or dynamically quantised int8)."""
        if self.backend == "onnx" and self.eval_precision == "bf16":
            raise ConfigError(
                "eval_precision=bf16 has no onnxruntime path: use eval_precision=int8 or fp32 with "
                "backend=onnx, or backend=torch for bf16"
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
