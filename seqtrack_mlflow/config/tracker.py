"""The tracker's settings: inference and evaluation (search crop, window penalty, template update,
benchmark, backend, baselines), taken by evaluate, track, main and sweep."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from seqtrack_mlflow.config.declare import (
    EVAL_STEPS,
    TRACK_STEPS,
    ConfigError,
    Validated,
    check_fields,
    setting,
)

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


def parse_baselines(text: str) -> tuple[str, ...]:
    """`"kcf,csrt"` -> ("kcf", "csrt"); "" or "none" -> (). Unknown names are refused."""
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    if names in ((), ("none",)):
        return ()
    unknown = [n for n in names if n not in BASELINE_TRACKERS]
    if unknown:
        raise ConfigError(f"baselines={text}: unknown tracker {', '.join(unknown)}: use {BASELINES_USE}")
    return tuple(dict.fromkeys(names))


def _parses_as_baselines(text: str) -> bool:
    try:
        parse_baselines(text)
    except ConfigError:
        return False
    return True


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
    )
    backend: str = setting(
        "torch",
        "what runs the model when tracking: torch (PyTorch) or onnx (the model exported to ONNX, run by "
        "onnxruntime; eval_precision fp32 or int8; needs pip install -e '.[onnx]')",
        steps=("main", "evaluate", "track"),
        choices=("torch", "onnx"),
        sweep=False,
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
        check=(_parses_as_baselines, BASELINES_USE),
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
