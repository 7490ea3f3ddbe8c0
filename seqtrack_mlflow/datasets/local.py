"""What the datasets read from a local root only (GOT-10k, TrackingNet, COCO) share: where the root
comes from (a setting, else its environment variable), the one-line refusals when it is missing, and
`SplitRead`, what reading one split found (the sequences, and how many the split names that are not on
disk: a partial download is read as it is and says so).

These datasets are selected as a whole split (`-P datasets=`, `-P got10k_split=`, ...), not by class:
`classes` keeps selecting LaSOT classes. Their registry entries answer the `base.Dataset` protocol with
their splits in place of classes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from pathlib import Path

from seqtrack_mlflow.config import DataConfig, env_name

from .base import DataSourceError, Found, RootSource, Sequence


@dataclass(frozen=True)
class SplitRead:
    """One split of one dataset as found on disk."""

    dataset: str  # the registry name
    label: str  # how lines and summaries name it
    split: str
    root: Path
    sequences: Seq[Sequence]  # a list, or a compact pool (COCO's objects) that builds them on demand
    expected: int  # the sequences the split names (its list, split file or annotation file)
    images: bool = False  # one-frame sequences of still images (COCO): templates and search share the frame
    note: str = ""  # what else a user should know (chunks absent, entries dropped)

    @property
    def missing(self) -> int:
        return self.expected - len(self.sequences)

    def line(self) -> str:
        """`GOT-10k vottrain: 3,500 of the split's 7,086 sequences (3,586 missing: ...)`."""
        have = len(self.sequences)
        what = ("object" if self.images else "sequence") + ("" if self.expected == 1 else "s")
        text = f"{self.label} {self.split}: {have:,} {what} under {self.root}"
        if self.missing:
            text = (
                f"{self.label} {self.split}: {have:,} of the split's {self.expected:,} {what} under "
                f"{self.root} ({self.missing:,} missing: a partial download is read as it is)"
            )
        return text + (f"; {self.note}" if self.note else "")


class LocalRoot:
    """A dataset whose root is a local folder given by `<name>_root` or its environment variable.

    Subclasses set `name`, `label`, `setting` (the DataConfig field) and `layout` (what the root must
    hold, for the refusals)."""

    name: str
    label: str
    setting: str
    layout: str
    sources: tuple[str, ...] = ()  # not a value of `source`: selected through `datasets`
    caveat = ""

    @property
    def env(self) -> str:
        return env_name(DataConfig, self.setting)

    @property
    def roots(self) -> tuple[RootSource, ...]:
        return (RootSource("local", self.setting, self.env),)

    def given_root(self, data: DataConfig) -> str:
        """The root as given: the setting, else its variable ("" if neither)."""
        return getattr(data, self.setting) or os.environ.get(self.env, "")

    def root(self, data: DataConfig) -> Path:
        """The root, checked to be a folder; one line naming the setting and the variable otherwise."""
        given = self.given_root(data)
        if not given:
            raise DataSourceError(
                f"{self.name} needs its root folder ({self.layout}): pass -P {self.setting}=/path "
                f"or set {self.env}"
            )
        root = Path(given).expanduser()
        if not root.is_dir():
            raise DataSourceError(
                f"{self.label} root {root} does not exist: fix -P {self.setting} (or {self.env})"
            )
        return root.resolve()

    def auto_source(self, data: DataConfig) -> str:
        return "local"

    def check(self, data: DataConfig, source: str) -> None:
        self.root(data)

    def used_settings(self, data: DataConfig, source: str) -> dict[str, str]:
        return {self.setting: str(self.root(data))}

    def find_root(self, data: DataConfig) -> Found:
        given = self.given_root(data)
        if not given:
            return Found(None, "no")
        how = self.setting if getattr(data, self.setting) else f"${self.env}"
        root = Path(given).expanduser()
        if not root.is_dir():
            return Found(None, f"no: {root} ({how}) does not exist")
        return Found(root.resolve(), f"{root.resolve()} ({how})")

    def prepare(self, data: DataConfig, source: str, classes: list[str], seed: int) -> Path:
        """Nothing to download or generate: the root as it is."""
        return self.root(data)


def listing(folder: Path, what: str, fix: str) -> set[str]:
    """The names in `folder` (one directory listing), or one line saying it is missing."""
    try:
        return set(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        raise DataSourceError(f"{folder}: {what} is missing: {fix}") from None


__all__ = ["LocalRoot", "SplitRead", "listing"]
