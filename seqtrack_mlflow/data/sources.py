"""Where the LaSOT tree comes from: a local folder, the Hugging Face hub, or the synthetic generator.

Every source ends in the same thing, a LaSOT root folder read by `lasot.py`, so nothing downstream
knows or cares which source was used, except the run's params, tags and dataset summary, which say it
(synthetic data is a labelled stand-in, never a silent fallback).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
import uuid
from pathlib import Path

from ..config import ConfigError, DataConfig
from .lasot import (
    LASOT_CLASSES,
    LasotFormatError,
    available_classes,
    class_sequence_dirs,
    read_sequence,
    verify_frames,
)

SOURCES = ("auto", "local", "hub", "synthetic")
COMPLETE_MARKER = ".complete"  # written inside a generated/extracted class folder before it is published


class DataSourceError(RuntimeError):
    """The data source cannot deliver: one line naming the source or input and the fix."""


def default_cache_dir() -> Path:
    """`$SEQTRACK_CACHE` or `~/.cache/seqtrack-mlflow`: hub downloads and synthetic trees live here."""
    env = os.environ.get("SEQTRACK_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "seqtrack-mlflow"


def cache_dir_of(cfg: DataConfig) -> Path:
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()


def resolve_source(cfg: DataConfig) -> str:
    """The concrete source: `auto` means `local` when a LaSOT root is given, else `hub`."""
    source = cfg.source.strip().lower()
    if source not in SOURCES:
        raise DataSourceError(f"unknown source {cfg.source!r}: use one of {', '.join(SOURCES)}")
    if source == "auto":
        return "local" if (cfg.lasot_root or os.environ.get("LASOT_ROOT")) else "hub"
    return source


def local_root(cfg: DataConfig) -> Path:
    """The user's LaSOT root (`lasot_root`, else `$LASOT_ROOT`), checked to exist."""
    given = cfg.lasot_root or os.environ.get("LASOT_ROOT", "")
    if not given:
        raise DataSourceError(
            "source=local needs a LaSOT root: pass -P lasot_root=/path/to/LaSOT or set LASOT_ROOT"
        )
    root = Path(given).expanduser()
    if not root.is_dir():
        raise DataSourceError(f"LaSOT root {root} does not exist: fix -P lasot_root (or LASOT_ROOT)")
    return root.resolve()


def parse_size(text: str) -> tuple[int, int]:
    """`"320x240"` -> (320, 240)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if match is None:
        raise ConfigError(f"synthetic_size={text!r} is invalid: use WIDTHxHEIGHT, e.g. 320x240 or 1280x720")
    width, height = int(match[1]), int(match[2])
    if width < 32 or height < 32:
        raise ConfigError(f"synthetic_size={text!r} is too small: use at least 32x32")
    return width, height


def candidate_classes(cfg: DataConfig) -> list[str]:
    """Classes the selection may draw from: what a local root holds, else all 70 LaSOT classes."""
    if resolve_source(cfg) != "local":
        return list(LASOT_CLASSES)
    root = local_root(cfg)
    classes = available_classes(root)
    if not classes:
        raise DataSourceError(
            f"no LaSOT class folders (airplane/, bear/, ...) under {root}: fix -P lasot_root (or LASOT_ROOT)"
        )
    return classes


def synthetic_key(seed: int, sequences: int, frames: int, size: tuple[int, int]) -> str:
    """Folder name of one synthetic configuration; the generator version makes old trees stale."""
    from .synthetic import GENERATOR_VERSION

    return f"v{GENERATOR_VERSION}-seed{seed}-seq{sequences}-f{frames}-{size[0]}x{size[1]}"


def prepare_root(cfg: DataConfig, classes: list[str], seed: int) -> Path:
    """A LaSOT root holding `classes`: the local root, the fetched hub root, or a generated tree.
    With `verify_frames`, every frame of those classes is then decoded once (`lasot.verify_frames`):
    the first damaged one raises `lasot.FrameError`, one line naming the file."""
    root = _prepare_root(cfg, classes, seed)
    if cfg.verify_frames:
        check_class_frames(root, classes)
    return root


def check_class_frames(root: Path, classes: list[str]) -> int:
    """Decode every frame of the classes' sequences; returns the number of frames decoded."""
    start = time.perf_counter()
    sequences = [read_sequence(path) for name in classes for path in class_sequence_dirs(root, name)]
    count = verify_frames(sequences)
    print(
        f"verify_frames: decoded all {count} frames of {len(sequences)} sequences "
        f"in {time.perf_counter() - start:.1f} s",
        file=sys.stderr,
    )
    return count


def _prepare_root(cfg: DataConfig, classes: list[str], seed: int) -> Path:
    source = resolve_source(cfg)
    if source == "local":
        root = local_root(cfg)
        missing = [name for name in classes if not (root / name).is_dir()]
        if missing:
            raise DataSourceError(
                f"class folder(s) {', '.join(missing)} missing under {root}: fix -P lasot_root or -P classes"
            )
        return root
    if source == "hub":
        from .hub import fetch_lasot_classes

        return fetch_lasot_classes(classes, cache_dir_of(cfg))
    return _prepare_synthetic(cfg, classes, seed)


def _prepare_synthetic(cfg: DataConfig, classes: list[str], seed: int) -> Path:
    """Generate missing classes into `<cache>/synthetic/<key>/`, each published by an atomic rename."""
    from .synthetic import generate_lasot

    size = parse_size(cfg.synthetic_size)
    if not 1 <= cfg.synthetic_sequences <= 20:
        raise ConfigError(
            f"synthetic_sequences={cfg.synthetic_sequences} is invalid: use 1..20 (LaSOT has 20 per class)"
        )
    if cfg.synthetic_frames < 1:
        raise ConfigError(f"synthetic_frames={cfg.synthetic_frames} is invalid: use a positive number")
    cache = cache_dir_of(cfg) / "synthetic"
    root = cache / synthetic_key(seed, cfg.synthetic_sequences, cfg.synthetic_frames, size)
    root.mkdir(parents=True, exist_ok=True)
    for name in classes:
        if name not in LASOT_CLASSES:
            raise DataSourceError(f"unknown LaSOT class {name!r}: choose from {', '.join(LASOT_CLASSES)}")
        target = root / name
        if (target / COMPLETE_MARKER).is_file():
            continue
        tmp = cache / ".tmp" / f"{root.name}-{name}-{uuid.uuid4().hex[:8]}"
        try:
            generate_lasot(
                tmp,
                [name],
                sequences_per_class=cfg.synthetic_sequences,
                frames=cfg.synthetic_frames,
                size=size,
                seed=seed,
            )
            (tmp / name / COMPLETE_MARKER).write_text("complete\n")
            publish(tmp / name, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def publish(staged: Path, target: Path) -> None:
    """Move a completed folder into place; an incomplete leftover is replaced, a concurrent winner kept."""
    if target.exists() and not (target / COMPLETE_MARKER).is_file():
        shutil.rmtree(target)  # an interrupted run of an older layout: never half-use it
    try:
        os.replace(staged, target)
    except OSError:
        if not (target / COMPLETE_MARKER).is_file():  # not another process finishing first
            raise


__all__ = [
    "COMPLETE_MARKER",
    "DataSourceError",
    "LasotFormatError",
    "SOURCES",
    "candidate_classes",
    "check_class_frames",
    "default_cache_dir",
    "local_root",
    "parse_size",
    "prepare_root",
    "resolve_source",
    "synthetic_key",
]
