"""The mix settings and the refusals before a run: dataset names, ratios, chunks, missing roots."""

from __future__ import annotations

import pytest

from seqtrack_mlflow.config import ConfigError, DataConfig
from seqtrack_mlflow.config.data import parse_chunks, parse_datasets, parse_ratios
from seqtrack_mlflow.datasets.base import DataSourceError
from seqtrack_mlflow.datasets.selection import preflight


def test_the_mix_values_parse_or_are_refused_in_one_line():
    assert parse_datasets("official") == ("lasot", "got10k", "trackingnet", "coco")
    assert parse_datasets(" GOT10k ,coco") == ("got10k", "coco")
    assert DataConfig().mix == ("lasot",) and DataConfig().ratios == (1.0,)
    assert DataConfig(datasets="official").ratios == (1.0, 1.0, 1.0, 1.0)  # unset: equal
    for bad, message in (
        ("lasot,vot", "names unknown dataset 'vot': use a comma-separated list of lasot, got10k"),
        ("coco,coco", "names a dataset twice"),
        ("", "names no dataset"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_datasets(bad)
    assert parse_ratios("1,2", 2) == (1.0, 2.0)
    with pytest.raises(ConfigError, match=r"dataset_ratios=1,1 is invalid: use 4 positive numbers"):
        DataConfig(datasets="official", dataset_ratios="1,1").validate()
    with pytest.raises(ConfigError, match=r"dataset_ratios=1,-1"):
        parse_ratios("1,-1", 2)
    assert parse_chunks("all") == tuple(range(12)) and parse_chunks("2,0,2") == (0, 2)
    with pytest.raises(ConfigError, match="trackingnet_chunks=a is invalid"):
        parse_chunks("a")


def test_a_missing_root_is_refused_before_a_run_naming_the_setting_and_variable(monkeypatch, tmp_path):
    for var in ("GOT10K_ROOT", "TRACKINGNET_ROOT", "COCO_ROOT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(
        DataSourceError,
        match=r"^got10k needs its root folder .*: pass -P got10k_root=/path or set GOT10K_ROOT$",
    ):
        preflight(DataConfig(source="synthetic", datasets="lasot,got10k"))
    with pytest.raises(
        DataSourceError, match=r"COCO root .*nowhere does not exist: fix -P coco_root \(or COCO_ROOT\)"
    ):
        preflight(DataConfig(source="synthetic", datasets="coco", coco_root=str(tmp_path / "nowhere")))
    with pytest.raises(ConfigError, match="names unknown dataset"):
        preflight(DataConfig(source="synthetic", datasets="lasot,imagenet"))
    # Without LaSOT in the mix, a LaSOT root is not needed.
    monkeypatch.setenv("COCO_ROOT", str(tmp_path))
    preflight(DataConfig(source="local", datasets="coco"))
