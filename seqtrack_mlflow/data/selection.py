"""Which classes a run uses, the per-sequence index (a `datasets.Dataset`) and the dataset summary.

`classes` is a comma-separated list; each `random` is replaced by one class drawn with
`random.Random(seed)` from the sorted classes not otherwise named, so the same seed and the same
available classes always give the same selection (the seed is a run parameter, the draw is reproducible).
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Sequence as Seq
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .lasot import Sequence, class_sequence_dirs, frame_size, read_sequence
from .sources import DataSourceError

if TYPE_CHECKING:
    import datasets

RANDOM = "random"
ALL = "all"
SPLITS = ("train", "test")
INDEX_COLUMNS = (
    "class",
    "sequence",
    "number",
    "split",
    "frames",
    "visible_frames",
    "width",
    "height",
    "path",
)


class SelectionError(DataSourceError, ValueError):
    """A bad `classes` value: one line naming it and listing what is available."""


def resolve_classes(spec: str, available: Seq[str], seed: int) -> list[str]:
    """Class names from `spec` (order kept, duplicates dropped), each `random` drawn with the seed;
    `all` = every available class (the full LaSOT benchmark with a complete local root)."""
    items = [item.strip() for item in (spec or "").split(",") if item.strip()]
    if not items:
        raise SelectionError(f"classes={spec!r} names no class: use e.g. -P classes=airplane,random")
    if [item.lower() for item in items] == [ALL]:
        return sorted(available)
    by_lower = {name.lower(): name for name in available}
    named: list[str] = []
    for item in items:
        if item.lower() == RANDOM:
            continue
        if item.lower() not in by_lower:
            raise SelectionError(
                f"unknown class {item!r} in classes={spec!r}: "
                f"available classes are {', '.join(sorted(available))}"
            )
        named.append(by_lower[item.lower()])
    rng = random.Random(seed)
    chosen: list[str] = []
    for item in items:
        if item.lower() == RANDOM:
            pool = sorted(set(available) - set(named) - set(chosen))
            if not pool:
                raise SelectionError(
                    f"classes={spec!r}: no class left for 'random' among {', '.join(sorted(available))}"
                )
            name = rng.choice(pool)
        else:
            name = by_lower[item.lower()]
        if name not in chosen:
            chosen.append(name)
    return chosen


def _row(seq: Sequence) -> dict[str, Any]:
    width, height = frame_size(seq)
    return {
        "class": seq.class_name,
        "sequence": seq.name,
        "number": seq.number,
        "split": seq.split,
        "frames": seq.num_frames,
        "visible_frames": int(seq.visible.sum()),
        "width": width,
        "height": height,
        "path": str(seq.path),
    }


def build_index(root: Path, classes: Seq[str]) -> datasets.Dataset:
    """One row per sequence of the given classes, sorted by class then number; every file is checked."""
    import datasets

    rows = []
    for class_name in sorted(classes):
        dirs = class_sequence_dirs(Path(root), class_name)
        if not dirs:
            raise DataSourceError(f"{Path(root) / class_name} holds no {class_name}-<k> sequence folders")
        rows.extend(_row(read_sequence(path, check_images=True)) for path in dirs)
    features = datasets.Features(
        {
            "class": datasets.Value("string"),
            "sequence": datasets.Value("string"),
            "number": datasets.Value("int32"),
            "split": datasets.Value("string"),
            "frames": datasets.Value("int64"),
            "visible_frames": datasets.Value("int64"),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            "path": datasets.Value("string"),
        }
    )
    columns = {name: [row[name] for row in rows] for name in INDEX_COLUMNS}
    return datasets.Dataset.from_dict(columns, features=features)


def _counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    return {
        "sequences": len(rows),
        "frames": sum(row["frames"] for row in rows),
        "visible_frames": sum(row["visible_frames"] for row in rows),
    }


def summarize(index: datasets.Dataset, source: str, seed: int, classes: list[str]) -> dict[str, Any]:
    """Sequences, frames and visible frames per class and split, plus totals (JSON-serialisable)."""
    rows = index.to_list()
    per_class = {
        name: {
            split: _counts([r for r in rows if r["class"] == name and r["split"] == split])
            for split in SPLITS
        }
        for name in classes
    }
    totals = {split: _counts([r for r in rows if r["split"] == split]) for split in SPLITS}
    totals["all"] = _counts(rows)
    sizes = sorted({f"{r['width']}x{r['height']}" for r in rows})
    return {
        "source": source,
        "seed": seed,
        "classes": list(classes),
        "per_class": per_class,
        "totals": totals,
        "frame_sizes": sizes,
    }


def summary_markdown(summary: dict[str, Any]) -> str:
    """The human-readable `dataset_summary.md`."""
    lines = [
        "# Dataset summary",
        "",
        f"- source: `{summary['source']}`"
        + (" (synthetic stand-in, not real LaSOT)" if summary["source"] == "synthetic" else ""),
        f"- seed: {summary['seed']}",
        f"- classes: {', '.join(summary['classes'])}",
        f"- frame sizes: {', '.join(summary.get('frame_sizes', [])) or '-'}",
        "- split: LaSOT protocol II",
        "",
        "| class | split | sequences | frames | visible frames |",
        "|---|---|---:|---:|---:|",
    ]
    for name, splits in summary["per_class"].items():
        for split in SPLITS:
            c = splits[split]
            lines.append(f"| {name} | {split} | {c['sequences']} | {c['frames']} | {c['visible_frames']} |")
    for split in (*SPLITS, "all"):
        c = summary["totals"][split]
        lines.append(f"| **total** | {split} | {c['sequences']} | {c['frames']} | {c['visible_frames']} |")
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    staged = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    staged.write_text(text, encoding="utf-8")
    os.replace(staged, path)


def write_summary(summary: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write `dataset_summary.md` and `dataset_summary.json` into out_dir; returns (md, json)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out_dir / "dataset_summary.md", out_dir / "dataset_summary.json"
    _write_atomic(json_path, json.dumps(summary, indent=2, sort_keys=False) + "\n")
    _write_atomic(md_path, summary_markdown(summary))
    return md_path, json_path


def sequences_from_index(index: datasets.Dataset, split: str | None = None) -> list[Sequence]:
    """Sequence objects for the index rows (optionally one split); images were checked at indexing."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split={split!r} is invalid: use 'train', 'test' or None")
    columns = index.select_columns(["split", "path"]).to_dict()
    return [
        read_sequence(Path(path), check_images=False)
        for row_split, path in zip(columns["split"], columns["path"], strict=True)
        if split is None or row_split == split
    ]


__all__ = [
    "INDEX_COLUMNS",
    "SelectionError",
    "build_index",
    "resolve_classes",
    "sequences_from_index",
    "summarize",
    "summary_markdown",
    "write_summary",
]
