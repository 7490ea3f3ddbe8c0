"""The per-sequence index every selection records (a Hugging Face `datasets.Dataset`): its columns, one
row of a sequence, and the table built from rows. LaSOT classes (`selection.build_index`) and each
dataset of a training mix (`mix.py`) are indexed the same way.

`import datasets` here is the Hugging Face library (an absolute import), not this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Sequence, frame_size

if TYPE_CHECKING:
    import datasets

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


def sequence_row(seq: Sequence) -> dict[str, Any]:
    """One index row; the frame size is read from frame 1's header."""
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


def index_from_columns(columns: dict[str, list[Any]]) -> datasets.Dataset:
    """The index table from its columns (INDEX_COLUMNS, equal lengths)."""
    import datasets

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
    return datasets.Dataset.from_dict({name: columns[name] for name in INDEX_COLUMNS}, features=features)


def index_from_rows(rows: list[dict[str, Any]]) -> datasets.Dataset:
    return index_from_columns({name: [row[name] for row in rows] for name in INDEX_COLUMNS})


__all__ = ["INDEX_COLUMNS", "index_from_columns", "index_from_rows", "sequence_row"]
