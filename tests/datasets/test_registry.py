"""`seqtrack-mlflow datasets`: one row per registered dataset (real registry), and the pure table."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from seqtrack_mlflow.cli import main
from seqtrack_mlflow.datasets import registry
from seqtrack_mlflow.datasets.base import DataSourceError
from seqtrack_mlflow.datasets.cache import COMPLETE_MARKER
from seqtrack_mlflow.datasets.synthetic import generate_lasot


def _rows() -> dict[str, list[str]]:
    """The command's output, split into columns by the header's column starts."""
    result = CliRunner().invoke(main, ["datasets"])
    assert result.exit_code == 0, (result.output, result.exception)
    header, *lines = result.output.rstrip("\n").split("\n")
    starts = [header.index(title) for title in ("name", "format", "source:", "found here", "evaluation")]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return {line.split()[0]: [line[a:b].strip() for a, b in bounds] for line in lines}


def test_format_table_aligns_columns_under_the_header() -> None:
    table = registry.format_table(
        [registry.Row("a", "LaSOT", "local: x / $X", "no", "OPE"), registry.Row("bbbb", "F", "s", "/p", "m")]
    )
    lines = table.split("\n")
    assert lines[0].split("  ")[0] == "name" and len(lines) == 3
    column = lines[0].index("format")
    assert lines[1][column:].startswith("LaSOT") and lines[2][column:].startswith("F ")
    assert all(line == line.rstrip() for line in lines)


def test_lists_every_registered_dataset_with_its_root_and_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("LASOT_ROOT", "GOT10K_ROOT", "TRACKINGNET_ROOT", "COCO_ROOT", "LASOT_EXT_ROOT"):
        monkeypatch.delenv(var, raising=False)
    rows = _rows()
    names = ["lasot", "synthetic", "got10k", "trackingnet", "coco", "lasot_ext"]
    assert list(rows) == registry.names() == names
    name, fmt, root_from, found, protocol = rows["lasot"]
    assert fmt == "LaSOT" and protocol == "LaSOT OPE: AUC, P, P_norm"
    assert root_from == "local: lasot_root / $LASOT_ROOT; hub: cache_dir / $SEQTRACK_CACHE"
    assert found == "no"  # no root given, nothing downloaded into this test's cache
    name, fmt, root_from, found, protocol = rows["synthetic"]
    assert (fmt, root_from) == ("LaSOT", "synthetic: cache_dir / $SEQTRACK_CACHE")
    assert protocol == "LaSOT OPE: AUC, P, P_norm"
    assert found == "no (generated when first used)"
    name, fmt, root_from, found, protocol = rows["got10k"]
    assert (fmt, root_from, found) == ("GOT-10k", "local: got10k_root / $GOT10K_ROOT", "no")
    assert protocol.startswith("GOT-10k: AO, SR0.5, SR0.75")
    assert rows["trackingnet"][2] == "local: trackingnet_root / $TRACKINGNET_ROOT"
    assert rows["coco"][1:3] == ["COCO 2017", "local: coco_root / $COCO_ROOT"]


def test_found_follows_lasot_root_and_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "LaSOT"
    generate_lasot(root, ["airplane", "bear"], sequences_per_class=1, frames=2, size=(32, 32))
    monkeypatch.setenv("LASOT_ROOT", str(root))
    assert _rows()["lasot"][3] == f"{root.resolve()} ($LASOT_ROOT: 2 classes)"

    monkeypatch.setenv("LASOT_ROOT", str(tmp_path / "missing"))
    assert _rows()["lasot"][3] == f"no: {tmp_path / 'missing'} ($LASOT_ROOT) does not exist"
    monkeypatch.setenv("LASOT_ROOT", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    assert "holds no LaSOT class folder" in _rows()["lasot"][3]

    monkeypatch.delenv("LASOT_ROOT")
    cache = tmp_path / "cache"  # SEQTRACK_CACHE (conftest)
    (cache / "lasot" / "bear").mkdir(parents=True)
    (cache / "lasot" / "bear" / COMPLETE_MARKER).write_text("complete\n")
    (cache / "synthetic" / "v1-seed0-seq1-f2-32x32").mkdir(parents=True)
    (cache / "synthetic" / ".tmp").mkdir()  # a build in progress is no tree
    rows = _rows()
    assert rows["lasot"][3] == f"{cache / 'lasot'} (hub: 1 class)"
    assert rows["synthetic"][3] == f"{cache / 'synthetic'} (1 generated tree)"


def test_registry_lookup() -> None:
    from seqtrack_mlflow.config import declared_settings

    assert registry.get("lasot").sources == ("local", "hub")
    assert registry.for_source("synthetic") is registry.get("synthetic")
    assert registry.SOURCES == ("auto", "local", "hub", "synthetic")
    # The `source` setting takes whatever the registry serves (no second list in the settings).
    assert not next(s for s in declared_settings() if s.name == "source").choices
    assert registry.root_settings() == [
        ("lasot_root", "LASOT_ROOT"),
        ("cache_dir", "SEQTRACK_CACHE"),
        ("got10k_root", "GOT10K_ROOT"),
        ("trackingnet_root", "TRACKINGNET_ROOT"),
        ("coco_root", "COCO_ROOT"),
        ("lasot_ext_root", "LASOT_EXT_ROOT"),
    ]
    registered = "registered are lasot, synthetic, got10k, trackingnet, coco, lasot_ext"
    with pytest.raises(DataSourceError, match=f"unknown dataset 'vot': {registered}"):
        registry.get("vot")
