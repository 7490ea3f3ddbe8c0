"""The dataset registry: name -> entry, and which entry serves each value of the `source` setting.

A new dataset is its reader module, holding an entry that implements `base.Dataset`, plus one line in
`_ENTRIES`. Each entry names the `source` values it serves (LaSOT: `local`, `hub`; the generator:
`synthetic`); `source=auto` is resolved by the first entry, the default dataset. Callers ask the entry
for everything that differs between datasets (roots, classes, labels, the evaluation protocol), so
nothing outside the readers special-cases one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import coco, got10k, hub, lasot, lasot_ext, synthetic, trackingnet
from .base import Dataset, DataSourceError

if TYPE_CHECKING:
    from seqtrack_mlflow.config import DataConfig

_ENTRIES: tuple[Dataset, ...] = (
    lasot.Lasot(fetch=hub.fetch_lasot_classes),
    synthetic.Synthetic(),
    got10k.Got10k(),
    trackingnet.TrackingNet(),
    coco.Coco(),
    lasot_ext.LasotExt(),
)
_BY_NAME: dict[str, Dataset] = {entry.name: entry for entry in _ENTRIES}
_BY_SOURCE: dict[str, Dataset] = {source: entry for entry in _ENTRIES for source in entry.sources}
AUTO = "auto"
SOURCES: tuple[str, ...] = (AUTO, *_BY_SOURCE)


def names() -> list[str]:
    """Registered dataset names, the default first."""
    return list(_BY_NAME)


def get(name: str) -> Dataset:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise DataSourceError(f"unknown dataset {name!r}: registered are {', '.join(_BY_NAME)}") from None


def default() -> Dataset:
    """The dataset `source=auto` resolves through (the first registered)."""
    return _ENTRIES[0]


def resolve_source(cfg: DataConfig) -> str:
    """The concrete source: `auto` is what the default dataset picks (LaSOT: `local` when a root is
    given, else `hub`)."""
    source = cfg.source.strip().lower()
    if source not in SOURCES:
        raise DataSourceError(f"unknown source {cfg.source!r}: use one of {', '.join(SOURCES)}")
    if source == AUTO:
        return default().auto_source(cfg)
    return source


def for_source(source: str) -> Dataset:
    """The entry serving a concrete source (`resolve_source`'s result, or a recorded one)."""
    try:
        return _BY_SOURCE[source]
    except KeyError:
        raise DataSourceError(f"unknown source {source!r}: use one of {', '.join(SOURCES)}") from None


def root_settings() -> list[tuple[str, str]]:
    """Every (setting, env variable) pair that names a dataset folder on this machine, once each."""
    return list(dict.fromkeys((root.setting, root.env) for entry in _ENTRIES for root in entry.roots))


@dataclass(frozen=True)
class Row:
    """One line of `seqtrack-mlflow datasets`."""

    name: str
    format: str
    root_from: str
    found: str
    protocol: str


HEADER = Row("name", "format", "source: root from (setting / env variable)", "found here", "evaluation")


def rows(data: DataConfig) -> list[Row]:
    """The registered datasets as table rows; `found` looks at this machine (no download)."""
    return [
        Row(
            entry.name,
            entry.format,
            "; ".join(f"{r.source}: {r.setting} / ${r.env}" for r in entry.roots),
            entry.find_root(data).detail,
            entry.protocol,
        )
        for entry in _ENTRIES
    ]


def format_table(table: Iterable[Row]) -> str:
    """Rows as aligned columns under a header (pure)."""
    lines = [HEADER, *table]
    cells = [list(vars(row).values()) for row in lines]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines_out = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)
    return "\n".join(lines_out)


__all__ = [
    "AUTO",
    "SOURCES",
    "Row",
    "default",
    "for_source",
    "format_table",
    "get",
    "names",
    "resolve_source",
    "root_settings",
    "rows",
]
