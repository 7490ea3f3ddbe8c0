"""The training mix: one pool of sequences per dataset, and the draw of a dataset by its ratio.

As the official sampler (`lib/train/data/sampler.py`): each sample first picks a dataset with
probability proportional to its ratio (`random.choices(datasets, p_datasets)`), then a sequence uniformly
within it. Video datasets keep the sequences the official rule accepts (`sampling.is_usable`); an image
dataset (COCO) accepts every sequence (`enough_visible_frames or not is_video_dataset`) and repeats its
one image for the templates and the search frame (`[1] * num_frames`), each crop jittered on its own.
An object with no area is left out here: the official processing refuses its crop (`crop_sz < 1`) and
draws again.

A run on one dataset given as a plain list (`datasets=lasot`, the default) draws no dataset: its random
stream, and so every sample, is the one it always was.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass

import numpy as np

from seqtrack_mlflow.datasets.base import Sequence
from seqtrack_mlflow.datasets.coco import CocoObjects


@dataclass(frozen=True, eq=False)
class SamplePool:
    """One dataset's training sequences and its sampling weight."""

    name: str
    sequences: Seq[Sequence]  # a list, or a compact pool (COCO's objects)
    ratio: float = 1.0
    images: bool = False  # one-frame sequences of still images


@dataclass(frozen=True, eq=False)
class Mix:
    """The datasets a run trains on, in the order of `-P datasets`."""

    pools: tuple[SamplePool, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(pool.name for pool in self.pools)


def usable(pool: SamplePool, is_usable: Callable[[Sequence], bool]) -> SamplePool:
    """The pool's sequences that can give a sample: the official acceptance rule for videos, a box
    with area for images."""
    seqs = pool.sequences
    if not pool.images:
        kept: Seq[Sequence] = [s for s in seqs if is_usable(s)]
    elif isinstance(seqs, CocoObjects):
        kept = seqs.subset((seqs.boxes[:, 2] > 0) & (seqs.boxes[:, 3] > 0))
    else:
        kept = [s for s in seqs if s.boxes[0, 2] > 0 and s.boxes[0, 3] > 0]
    return SamplePool(pool.name, kept, pool.ratio, pool.images)


def cumulative(pools: Seq[SamplePool]) -> np.ndarray | None:
    """Cumulative dataset probabilities (None for one pool: nothing to draw)."""
    if len(pools) == 1:
        return None
    ratios = np.array([pool.ratio for pool in pools], dtype=np.float64)
    return np.cumsum(ratios / ratios.sum())


def pick(cum: np.ndarray | None, rng: np.random.Generator) -> int:
    """The dataset of one draw: index k with probability ratio_k / sum(ratios)."""
    if cum is None:
        return 0
    return min(int(np.searchsorted(cum, rng.random(), side="right")), len(cum) - 1)


__all__ = ["Mix", "SamplePool", "cumulative", "pick", "usable"]
