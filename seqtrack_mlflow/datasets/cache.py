"""The local cache: where downloaded and generated datasets live, and how a finished folder enters it.

A folder is built (extracted, generated) under a private temporary name, gets `COMPLETE_MARKER` inside,
and is then renamed into place by `publish`: a reader never sees half a folder, an interrupted build is
redone rather than half-used, and of two processes building the same folder one wins, the other's
work is dropped.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from seqtrack_mlflow.config import DataConfig, env_name

CACHE_SETTING = "cache_dir"
CACHE_ENV = env_name(DataConfig, CACHE_SETTING)  # declared with the setting
COMPLETE_MARKER = ".complete"  # written inside a generated/extracted class folder before it is published


def default_cache_dir() -> Path:
    """`$SEQTRACK_CACHE` or `~/.cache/seqtrack-mlflow`: hub downloads and synthetic trees live here."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "seqtrack-mlflow"


def cache_dir_of(cfg: DataConfig) -> Path:
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()


def publish(staged: Path, target: Path) -> None:
    """Move a completed folder into place; an incomplete leftover is replaced, a concurrent winner kept."""
    if target.exists() and not (target / COMPLETE_MARKER).is_file():
        shutil.rmtree(target)  # an interrupted run of an older layout: never half-use it
    try:
        os.replace(staged, target)
    except OSError:
        if not (target / COMPLETE_MARKER).is_file():  # not another process finishing first
            raise


__all__ = ["CACHE_ENV", "CACHE_SETTING", "COMPLETE_MARKER", "cache_dir_of", "default_cache_dir", "publish"]
