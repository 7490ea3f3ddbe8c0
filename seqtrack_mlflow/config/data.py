"""The data settings (`DataConfig`): where each dataset's files lie, which LaSOT classes are used, and
the training mix (which datasets, at what ratios), with the pure parsers of the mix values.

Kept apart from `settings.py` (which lists this class in SETTINGS_CLASSES) so each stays a readable size.
The mix follows the official SeqTrack configuration files: B256/B384/L256/L384 train on `LASOT`,
`GOT10K_vottrain`, `COCO17` and `TRACKINGNET` at ratios 1:1:1:1 (`-P datasets=official`); the `*_got`
variants on `GOT10K_train_full` alone (`-P datasets=got10k -P got10k_split=train_full`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from seqtrack_mlflow.config.declare import ConfigError, check_fields, data_setting, setting

MIX_DATASETS = ("lasot", "got10k", "trackingnet", "coco")  # what `datasets` may name
OFFICIAL = "official"  # the presets' mix: every one of MIX_DATASETS, ratios 1:1:1:1
EQUAL = "equal"
GOT10K_TRAIN_SPLITS = ("vottrain", "train_full", "train", "votval", "ltrval")  # official data_specs files
TRACKINGNET_CHUNKS = 12  # TRAIN_0 .. TRAIN_11
ALL_CHUNKS = "all"


def parse_datasets(text: str) -> tuple[str, ...]:
    """`"lasot,coco"` -> ("lasot", "coco"); `official` = all four in the official order."""
    items = [item.strip().lower() for item in str(text or "").split(",") if item.strip()]
    if items == [OFFICIAL]:
        return MIX_DATASETS
    use = f"use a comma-separated list of {', '.join(MIX_DATASETS)}, or {OFFICIAL}"
    if not items:
        raise ConfigError(f"datasets={text!r} names no dataset: {use}")
    for item in items:
        if item not in MIX_DATASETS:
            raise ConfigError(f"datasets={text} names unknown dataset {item!r}: {use}")
    if len(set(items)) != len(items):
        raise ConfigError(f"datasets={text} names a dataset twice: {use}")
    return tuple(items)


def parse_ratios(text: str | None, count: int) -> tuple[float, ...]:
    """Sampling weights, one per dataset of `datasets` (unset or `equal`: 1 each)."""
    if text is None or str(text).strip().lower() in ("", EQUAL):
        return (1.0,) * count
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != count or not all(math.isfinite(v) and v > 0 for v in values):
        raise ConfigError(
            f"dataset_ratios={text} is invalid: use {count} positive number{'s' if count > 1 else ''}, "
            "one per dataset of -P datasets, e.g. 1,1,1,1 (or equal)"
        )
    return values


def parse_chunks(text: str) -> tuple[int, ...]:
    """`"0,1,2"` -> (0, 1, 2); `all` = TRAIN_0 .. TRAIN_11."""
    if str(text).strip().lower() == ALL_CHUNKS:
        return tuple(range(TRACKINGNET_CHUNKS))
    use = f"use {ALL_CHUNKS} or chunk numbers 0..{TRACKINGNET_CHUNKS - 1}, e.g. 0,1,2"
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts or not all(re.fullmatch(r"\d{1,2}", p) and int(p) < TRACKINGNET_CHUNKS for p in parts):
        raise ConfigError(f"trackingnet_chunks={text} is invalid: {use}")
    return tuple(sorted({int(p) for p in parts}))


def parse_size(text: str) -> tuple[int, int]:
    """`"320x240"` -> (320, 240): the synthetic frame size."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if match is None:
        raise ConfigError(f"synthetic_size={text!r} is invalid: use WIDTHxHEIGHT, e.g. 320x240 or 1280x720")
    width, height = int(match[1]), int(match[2])
    if width < 32 or height < 32:
        raise ConfigError(f"synthetic_size={text!r} is too small: use at least 32x32")
    return width, height


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from, which LaSOT classes are used, and the training mix. Every entry point
    takes these; in `train` and `evaluate` an unset one is the value of the run they build on
    (`data_setting`)."""

    source: str = data_setting(
        "auto",
        "where the data comes from: a source of a registered dataset (`seqtrack-mlflow datasets` lists "
        "them: local, hub, synthetic) or auto = LaSOT local when a root is given, else the Hugging Face hub",
    )
    lasot_root: str | None = data_setting(
        None, "LaSOT root folder for source=local", unset="$LASOT_ROOT", resume=True, env="LASOT_ROOT"
    )
    classes: str = data_setting(
        "airplane,random",
        "comma-separated classes; 'random' = one class drawn with the seed; 'all' = every class",
    )
    cache_dir: str | None = data_setting(
        None,
        "where hub downloads and synthetic data go",
        unset="$SEQTRACK_CACHE or ~/.cache/seqtrack-mlflow",
        resume=True,
        env="SEQTRACK_CACHE",
    )
    synthetic_sequences: int = data_setting(
        20,
        "sequences per class for source=synthetic",
        check=(lambda v: 1 <= v <= 20, "1..20 (LaSOT has 20 per class)"),
    )
    synthetic_frames: int = data_setting(
        100, "frames per sequence for source=synthetic", check=(lambda v: v >= 1, "a positive number")
    )
    synthetic_size: str = data_setting("320x240", "frame size WxH for source=synthetic")
    datasets: str = data_setting(
        "lasot",
        "training datasets, comma-separated: lasot (the data of `source` and `classes`), got10k, "
        "trackingnet, coco; official = lasot,got10k,trackingnet,coco (the paper's mix)",
    )
    dataset_ratios: str | None = data_setting(
        None,
        "sampling weight of each dataset in `datasets`, in its order, e.g. 1,1,1,1",
        unset="equal weights",
    )
    got10k_root: str | None = data_setting(
        None, "GOT-10k root folder (holding train/, val/, test/)", resume=True, env="GOT10K_ROOT"
    )
    got10k_split: str = data_setting(
        "vottrain",
        "GOT-10k training split (official split files): vottrain (the official mix), train_full "
        "(the *_got models), train, votval, ltrval",
        choices=GOT10K_TRAIN_SPLITS,
        check=(lambda v: v in GOT10K_TRAIN_SPLITS, ", ".join(GOT10K_TRAIN_SPLITS)),
    )
    trackingnet_root: str | None = data_setting(
        None,
        "TrackingNet root folder (holding TRAIN_0 ... TRAIN_11/, TEST/)",
        resume=True,
        env="TRACKINGNET_ROOT",
    )
    trackingnet_chunks: str = data_setting(
        ALL_CHUNKS, "TrackingNet training chunks: all, or chunk numbers 0..11 such as 0,1,2"
    )
    coco_root: str | None = data_setting(
        None,
        "COCO 2017 root folder (holding train2017/ and annotations/instances_train2017.json)",
        resume=True,
        env="COCO_ROOT",
    )
    lasot_ext_root: str | None = data_setting(
        None,
        "LaSOT extension root folder for -P benchmark=lasot_ext (<class>/<class>-<k>/, 15 classes)",
        resume=True,
        env="LASOT_EXT_ROOT",
    )
    verify_frames: bool = setting(
        False,
        "decode every frame of the selected classes in select_data to find damaged JPEGs "
        "(about 3 s per 1000 1280x720 frames per core; all of LaSOT's 3.5 M frames: about 3 core-hours)",
        steps=("main", "select_data", "train", "sweep"),
        inherit=("train",),
    )

    def validate(self) -> None:
        """The declared checks, the synthetic generator's limits and the mix values."""
        check_fields(self)
        parse_size(self.synthetic_size)
        names = parse_datasets(self.datasets)
        parse_ratios(self.dataset_ratios, len(names))
        parse_chunks(self.trackingnet_chunks)

    @property
    def mix(self) -> tuple[str, ...]:
        """The training datasets, in order."""
        return parse_datasets(self.datasets)

    @property
    def ratios(self) -> tuple[float, ...]:
        """One sampling weight per dataset of `mix`."""
        return parse_ratios(self.dataset_ratios, len(self.mix))


__all__ = [
    "ALL_CHUNKS",
    "GOT10K_TRAIN_SPLITS",
    "MIX_DATASETS",
    "OFFICIAL",
    "DataConfig",
    "parse_chunks",
    "parse_datasets",
    "parse_ratios",
    "parse_size",
]
