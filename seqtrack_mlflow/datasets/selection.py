"""The data a run uses: the source's dataset, the classes, the per-sequence index (a Hugging Face
`datasets.Dataset`), the dataset summary, and the `Selection` record that carries them to the steps.

`classes` is a comma-separated list; each `random` is replaced by one class drawn with
`random.Random(seed)` from the sorted classes not otherwise named, so the same seed and the same
available classes always give the same selection (the seed is a run parameter, the draw is reproducible).

`import datasets` here is the Hugging Face library (an absolute import), not this package.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
import time
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqtrack_mlflow.config import ConfigError, DataConfig
from seqtrack_mlflow.fileio import atomic_write_text

from . import registry
from .base import Dataset, DataSourceError, Sequence, verify_frames
from .cache import cache_dir_of
from .index import INDEX_COLUMNS, index_from_rows, sequence_row
from .mix import (
    LASOT,
    MixPart,
    check_parts,
    is_mix,
    load_parts,
    mix_markdown,
    mix_summary,
    read_parts,
    used_part_settings,
)

if TYPE_CHECKING:
    import datasets

RANDOM = "random"
ALL = "all"
SPLITS = ("train", "test")


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


def build_index(root: Path, classes: Seq[str], dataset: Dataset | None = None) -> datasets.Dataset:
    """One row per sequence of the given classes, sorted by class then number; every file is checked.
    `dataset`: the entry whose reader reads `root` (default: the default dataset's)."""
    dataset = dataset or registry.default()
    rows = []
    for class_name in sorted(classes):
        dirs = dataset.sequence_dirs(Path(root), class_name)
        if not dirs:
            raise DataSourceError(f"{Path(root) / class_name} holds no {class_name}-<k> sequence folders")
        rows.extend(sequence_row(dataset.read_sequence(path, check_images=True)) for path in dirs)
    return index_from_rows(rows)


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
    dataset = registry.for_source(summary["source"])
    lines = [
        "# Dataset summary",
        "",
        f"- source: `{summary['source']}`" + (f" ({dataset.caveat})" if dataset.caveat else ""),
        f"- seed: {summary['seed']}",
        f"- classes: {', '.join(summary['classes'])}",
        f"- frame sizes: {', '.join(summary.get('frame_sizes', [])) or '-'}",
        f"- split: {dataset.split_rule}",
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
    return "\n".join(lines + mix_markdown(summary)) + "\n"


def write_summary(summary: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write `dataset_summary.md` and `dataset_summary.json` into out_dir; returns (md, json)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out_dir / "dataset_summary.md", out_dir / "dataset_summary.json"
    atomic_write_text(json_path, json.dumps(summary, indent=2, sort_keys=False) + "\n")
    atomic_write_text(md_path, summary_markdown(summary))
    return md_path, json_path


def sequences_from_index(
    index: datasets.Dataset, split: str | None = None, dataset: Dataset | None = None
) -> list[Sequence]:
    """Sequence objects for the index rows (optionally one split); images were checked at indexing.
    `dataset`: the entry whose reader reads the rows' folders (default: the default dataset's)."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split={split!r} is invalid: use 'train', 'test' or None")
    dataset = dataset or registry.default()
    columns = index.select_columns(["split", "path"]).to_dict()
    return [
        dataset.read_sequence(Path(path), check_images=False)
        for row_split, path in zip(columns["split"], columns["path"], strict=True)
        if split is None or row_split == split
    ]


def candidate_classes(cfg: DataConfig) -> list[str]:
    """Classes the selection may draw from: what the source's dataset offers (a local root: its folders)."""
    source = registry.resolve_source(cfg)
    return registry.for_source(source).classes(cfg, source)


def prepare_root(cfg: DataConfig, classes: list[str], seed: int) -> Path:
    """A root holding `classes`: a local root, the fetched hub root, or a generated tree (the source's
    dataset decides). With `verify_frames`, every frame of those classes is then decoded once
    (`base.verify_frames`): the first damaged one raises `base.FrameError`, one line naming the file."""
    source = registry.resolve_source(cfg)
    dataset = registry.for_source(source)
    root = dataset.prepare(cfg, source, classes, seed)
    if cfg.verify_frames:
        check_class_frames(root, classes, dataset)
    return root


def check_class_frames(root: Path, classes: list[str], dataset: Dataset | None = None) -> int:
    """Decode every frame of the classes' sequences; returns the number of frames decoded."""
    dataset = dataset or registry.default()
    start = time.perf_counter()
    sequences = [
        dataset.read_sequence(path) for name in classes for path in dataset.sequence_dirs(root, name)
    ]
    count = verify_frames(sequences)
    print(
        f"verify_frames: decoded all {count} frames of {len(sequences)} sequences "
        f"in {time.perf_counter() - start:.1f} s",
        file=sys.stderr,
    )
    return count


@dataclass(frozen=True)
class Selection:
    """The data of a run: where it came from, the classes, the index and the summary."""

    source: str
    root: Path
    classes: list[str]
    index: Any  # datasets.Dataset
    summary: dict[str, Any]
    summary_paths: tuple[Path, ...]
    data: DataConfig  # the data settings, with source resolved
    run_id: str | None = None  # the select_data run it came from, where one did
    parts: tuple[MixPart, ...] = ()  # the other datasets of a training mix (mix.py)

    @property
    def dataset(self) -> Dataset:
        return registry.for_source(self.source)

    def sequences(self, split: str | None) -> list[Sequence]:
        return sequences_from_index(self.index, split, self.dataset)

    @property
    def info(self) -> dict[str, Any]:
        """What checkpoints store about the data (plain values, weights_only-safe)."""
        return {
            "source": self.source,
            "root": str(self.root),
            "classes": list(self.classes),
            "summary": self.summary,
            "data_run_id": self.run_id or "",
        }

    @property
    def name(self) -> str:
        """The MLflow dataset name: `<format>-<source>-<classes>`."""
        return f"{self.dataset.format.lower()}-{self.source}-{'-'.join(self.classes)}"

    @property
    def label(self) -> str:
        """How lines, titles and summaries name the data (synthetic data is never called LaSOT)."""
        if LASOT not in self.data.mix:
            return " + ".join(part.label for part in self.parts)
        return self.dataset.label


def preflight(data: DataConfig) -> None:
    """Refuse a bad source, a bad mix or a missing root before a run starts or anything is written."""
    check_parts(data)
    source = registry.resolve_source(data)
    if LASOT in data.mix:
        registry.for_source(source).check(data, source)


def used_data_settings(data: DataConfig) -> DataConfig:
    """The data settings as used: the folder settings (root, `cache_dir`) resolved to the folders read."""
    source = registry.resolve_source(data)
    lasot = registry.for_source(source).used_settings(data, source) if LASOT in data.mix else {}
    return dataclasses.replace(data, **lasot, **used_part_settings(data), cache_dir=str(cache_dir_of(data)))


def select(data: DataConfig, seed: int, out_dir: Path | None, *, announce: bool = True) -> Selection:
    """Pure data work (no MLflow): the selected classes, their index and (given a folder) summary files,
    and each other dataset of a training mix (`mix.py`). `announce`: say which classes were selected
    (and that a seed drew them), and what each dataset of the mix holds, on the console."""
    source = registry.resolve_source(data)
    dataset = registry.for_source(source)
    classes: list[str] = []
    root = Path()
    if LASOT in data.mix:
        classes = resolve_classes(data.classes, dataset.classes(data, source), seed)
        if announce:
            print(classes_line(data.classes, classes, seed, source))
        root = prepare_root(data, classes, seed)
    index = build_index(root, classes, dataset)
    summary = {**summarize(index, source, seed, classes), "root": str(root), "data": dataclasses.asdict(data)}
    parts = read_parts(data, announce=announce)
    if is_mix(data):
        summary.update(mix_summary(data, parts))
    paths: tuple[Path, ...] = ()
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = write_summary(summary, out_dir)
    return Selection(source, root, classes, index, summary, paths, data, parts=parts)


def classes_line(spec: str, classes: list[str], seed: int, source: str) -> str:
    """`classes: airplane + guitar (drawn with seed 8), synthetic LaSOT-format data`: what a run trains
    or tracks on. The source is named beside the label where the dataset has several."""
    drawn = f" (drawn with seed {seed})" if RANDOM in spec.lower() else ""
    dataset = registry.for_source(source)
    where = f"{dataset.label} ({source})" if len(dataset.sources) > 1 else dataset.label
    return f"classes: {' + '.join(classes)}{drawn}, {where}"


def load_selection(index_dir: Path, summary_path: Path, out_dir: Path, run_id: str | None) -> Selection:
    """The selection a select_data run recorded, from its downloaded index folder and summary file; the
    summary files are written again into `out_dir` (this run logs them too)."""
    import datasets

    summary = json.loads(Path(summary_path).read_text())
    index = datasets.load_from_disk(str(index_dir))
    return Selection(
        summary["source"],
        Path(summary.get("root", "")),
        list(summary["classes"]),
        index,
        summary,
        write_summary(summary, out_dir),
        DataConfig(**summary.get("data", {})),
        run_id,
        load_parts(summary, index_dir),
    )


def save_index(index: Any, path: Path) -> None:
    """save_to_disk without its progress bar (eight rows do not need one in the training log)."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        index.save_to_disk(str(path))
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def check_same_data(selection: Selection, given: dict[str, Any]) -> None:
    """Data settings given beside `data=<run>` must agree with that run's: one line per conflict."""
    conflicts = [
        f"{k}={v!r} (the data run used {getattr(selection.data, k)!r})"
        for k, v in given.items()
        if getattr(selection.data, k) != v
    ]
    if conflicts:
        raise ConfigError(
            f"data settings conflict with data run {selection.run_id}: {'; '.join(conflicts)}: "
            "drop them or drop -P data"
        )


__all__ = [
    "INDEX_COLUMNS",
    "Selection",
    "SelectionError",
    "build_index",
    "candidate_classes",
    "check_class_frames",
    "check_same_data",
    "classes_line",
    "load_selection",
    "preflight",
    "prepare_root",
    "resolve_classes",
    "select",
    "sequences_from_index",
    "summarize",
    "summary_markdown",
    "used_data_settings",
    "write_summary",
]
