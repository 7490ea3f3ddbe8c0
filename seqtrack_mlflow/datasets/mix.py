"""The datasets a training mix adds beside LaSOT (`-P datasets=lasot,got10k,trackingnet,coco`): each one
split read from its root, indexed, summarised, saved with the selection and read back from it.

`lasot` in the mix is the data of `source` and `classes` (`selection.py`); every other name is a
registry entry read as a whole training split: GOT-10k's `got10k_split` (official `vottrain` in the
paper's mix), TrackingNet's `trackingnet_chunks`, COCO's train2017 objects. A part's index is saved in
the selection's index folder under `<name>/`, so a later run (`-P data=<select_data run>`) reads back
exactly the sequences that were selected.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seqtrack_mlflow.config import DataConfig

from . import registry
from .base import DataSourceError, Sequence
from .coco import CocoObjects
from .index import INDEX_COLUMNS, index_from_columns, sequence_row
from .local import SplitRead

if TYPE_CHECKING:
    pass

LASOT = "lasot"


def training_split(name: str, data: DataConfig) -> str:
    """The split a mix trains on for dataset `name`."""
    return {"got10k": data.got10k_split, "trackingnet": "train", "coco": "train2017"}[name]


def extra_names(data: DataConfig) -> tuple[str, ...]:
    """The mix's datasets read here (all but LaSOT), in order."""
    return tuple(name for name in data.mix if name != LASOT)


def is_mix(data: DataConfig) -> bool:
    """Whether the run trains on anything but LaSOT alone (the default, recorded as it always was)."""
    return data.mix != (LASOT,)


@dataclass(frozen=True, eq=False)
class MixPart:
    """One dataset of the mix: where it was read, its index and summary; `read` in the process that
    read it (None when loaded from a select_data run: `sequences` reads it again)."""

    name: str
    split: str
    root: Path
    index: Any  # datasets.Dataset
    summary: dict[str, Any]
    read: SplitRead | None = None

    @property
    def label(self) -> str:
        return registry.get(self.name).label

    @property
    def images(self) -> bool:
        return bool(self.summary.get("images", False))

    def sequences(self, data: DataConfig) -> Seq[Sequence]:
        """The indexed sequences (read from disk again when this part was loaded from a run)."""
        if self.read is not None:
            return self.read.sequences
        read = registry.get(self.name).read_split(self.root, self.split, data)
        names = set(self.index["sequence"])
        pool = read.sequences
        if isinstance(pool, CocoObjects):
            kept: Seq[Sequence] = pool.subset(np.isin(pool.ids.astype(str), sorted(names)))
        else:
            kept = [seq for seq in pool if seq.name in names]
        if len(kept) != len(names):
            raise DataSourceError(
                f"{len(names) - len(kept)} of the {len(names)} {self.label} sequences the data run selected "
                f"are no longer under {self.root}: restore them or run select_data again"
            )
        return kept


def index_columns(pool: Seq[Sequence]) -> dict[str, list[Any]]:
    """A pool's index columns: COCO's from its annotation file, others a row per sequence."""
    if isinstance(pool, CocoObjects):
        return pool.index_columns()
    rows = [sequence_row(seq) for seq in pool]
    return {name: [row[name] for row in rows] for name in INDEX_COLUMNS}


def part_summary(read: SplitRead, columns: dict[str, list[Any]]) -> dict[str, Any]:
    """What the summary records of one dataset: split, root, counts, what is missing."""
    return {
        "label": read.label,
        "split": read.split,
        "root": str(read.root),
        "sequences": len(columns["sequence"]),
        "frames": int(sum(columns["frames"])),
        "visible_frames": int(sum(columns["visible_frames"])),
        "expected": read.expected,
        "missing": read.missing,
        "note": read.note,
        "images": read.images,
    }


def check_parts(data: DataConfig) -> None:
    """Refuse a bad mix value or a missing root before anything runs (one line each)."""
    data.validate()
    for name in extra_names(data):
        registry.get(name).check(data, "local")


def used_part_settings(data: DataConfig) -> dict[str, str]:
    """The roots of the mix's datasets, resolved to the folders read."""
    used: dict[str, str] = {}
    for name in extra_names(data):
        used.update(registry.get(name).used_settings(data, "local"))
    return used


def read_parts(data: DataConfig, *, announce: bool = True) -> tuple[MixPart, ...]:
    """Read, index and summarise every dataset of the mix but LaSOT; each says what it found."""
    parts = []
    for name in extra_names(data):
        entry = registry.get(name)
        root = entry.root(data)
        read = entry.read_split(root, training_split(name, data), data)
        if announce:
            print(read.line(), flush=True)
        columns = index_columns(read.sequences)
        parts.append(
            MixPart(name, read.split, root, index_from_columns(columns), part_summary(read, columns), read)
        )
    return tuple(parts)


def mix_summary(data: DataConfig, parts: Seq[MixPart]) -> dict[str, Any]:
    """The summary keys of a mix: `mix` (datasets, ratios) and `datasets` (one entry per part)."""
    return {
        "mix": {"datasets": list(data.mix), "ratios": list(data.ratios)},
        "datasets": {part.name: part.summary for part in parts},
    }


def mix_markdown(summary: dict[str, Any]) -> list[str]:
    """The summary's training-mix table (no lines for a LaSOT-only selection)."""
    if "mix" not in summary:
        return []
    mix = summary["mix"]
    lines = [
        "",
        "## Training mix",
        "",
        "| dataset | ratio | split | sequences | frames | visible frames | missing | root |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for name, ratio in zip(mix["datasets"], mix["ratios"], strict=True):
        if name == LASOT:
            c = summary["totals"]["train"]
            label = registry.for_source(summary["source"]).label
            p = {"label": label, "split": "train", "expected": c["sequences"], "missing": 0, **c}
            p["root"] = summary.get("root", "")
        else:
            p = summary["datasets"][name]
        note = f" ({p['note']})" if p.get("note") else ""
        lines.append(
            f"| {p['label']} | {ratio:g} | {p['split']} | {p['sequences']} | {p['frames']} | "
            f"{p['visible_frames']} | {p['missing']} of {p['expected']}{note} | {p['root']} |"
        )
    return lines


def save_parts(parts: Seq[MixPart], index_dir: Path, save: Any) -> None:
    """Each part's index into `<index_dir>/<name>/` (`save(index, path)`: selection.save_index)."""
    for part in parts:
        save(part.index, Path(index_dir) / part.name)


def load_parts(summary: dict[str, Any], index_dir: Path) -> tuple[MixPart, ...]:
    """The parts a select_data run recorded, from its downloaded index folder."""
    import datasets

    parts = []
    for name, entry in summary.get("datasets", {}).items():
        index = datasets.load_from_disk(str(Path(index_dir) / name))
        parts.append(MixPart(name, entry["split"], Path(entry["root"]), index, entry))
    return tuple(parts)


def dataset_name(part: MixPart) -> str:
    """The MLflow dataset name of a part: `<format>-<split>`."""
    return f"{registry.get(part.name).format.lower().replace(' ', '-')}-{part.split}"


__all__ = [
    "LASOT",
    "MixPart",
    "check_parts",
    "dataset_name",
    "extra_names",
    "index_columns",
    "is_mix",
    "load_parts",
    "mix_markdown",
    "mix_summary",
    "read_parts",
    "save_parts",
    "training_split",
    "used_part_settings",
]
