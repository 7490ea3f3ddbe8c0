"""The one way to get a SeqTrack with weights: build one, initialise it, or read trained weights.

Every step, the trainer and the tracker come here. This module ties together the parts that need not
know each other: the model class (`seqtrack.SeqTrack`), encoder initialisation from ViT weights
(`pretrained`), our checkpoint format (owned by `train.checkpoints`), and official SeqTrack release
files (`torch_zip` reads them without running their code, `official` maps their names and shapes).
Expected shapes are taken from a model built on the meta device: no memory, no weights.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import PRESETS, ConfigError, DataConfig, ModelConfig
from ..config import preset as preset_settings
from ..train import checkpoints
from . import official
from .official import OFFICIAL_PRESETS, OfficialCheckpointError
from .pretrained import PretrainedError, PretrainedReport, load_pretrained
from .seqtrack import SeqTrack
from .torch_zip import Archive, TensorRef, TorchZipError, materialise, open_archive
from .weights_fit import meta_state, weights_mismatch

# ---------------------------------------------------------------- building


def build_model(cfg: ModelConfig) -> SeqTrack:
    """A SeqTrack for `cfg`, initialised from `cfg.pretrained` unless that is "none": the encoder from
    a timm name or weights file, the whole model from an official SeqTrack release file."""
    model = SeqTrack(cfg)
    spec = (cfg.pretrained or "none").strip()
    if spec.lower() not in ("none", ""):
        path = Path(spec).expanduser()
        opened = _open_official(path) if path.is_file() else None
        if opened is not None:
            model.pretrained_report = _official_init(model, path, opened)
        else:
            model.pretrained_report = load_pretrained(model.encoder, spec, cfg)
    return model


def _official_init(model: SeqTrack, path: Path, opened: _Opened) -> PretrainedReport:
    """Every weight from an official release file; the architecture must be the file's preset's."""
    ours = dataclasses.replace(model.cfg, pretrained="none")
    # Read the file as the preset of our encoder and vocabulary (crop sizes may differ: refused below).
    width = ("encoder_dim", "encoder_depth", "encoder_heads", "bins")
    fits = (n for n in PRESETS if all(getattr(preset_settings(n)[0], k) == getattr(ours, k) for k in width))
    name = next(fits, None)
    try:
        weights = _official_weights(path, opened, name)
    except OfficialCheckpointError as exc:
        raise PretrainedError(str(exc)) from None
    differ = [
        f"{f.name} {getattr(ours, f.name)} (file: {getattr(weights.config, f.name)})"
        for f in dataclasses.fields(ModelConfig)
        if getattr(ours, f.name) != getattr(weights.config, f.name)
    ]
    if differ:
        raise PretrainedError(
            f"pretrained={path} is an official SeqTrack-{weights.preset.upper()} file but this model has "
            f"{'; '.join(differ)}: use -P preset={weights.preset} without geometry overrides"
        )
    model.load_state_dict(weights.state_dict)
    return PretrainedReport(source=str(path), loaded=len(weights.state_dict))


# ---------------------------------------------------------------- official release files


@functools.lru_cache(maxsize=16)
def official_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Official key -> shape for a model built with `cfg` (the 200 tensors of B256, for instance)."""
    return {k: tuple(v.shape) for k, v in official.to_official_state_dict(meta_state(cfg)).items()}


def _preset_config(name: str) -> ModelConfig:
    return dataclasses.replace(preset_settings(name)[0], pretrained="none")


def official_preset_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """What a file of preset `name` holds (official key -> shape): the `shapes_of` of `official`."""
    return official_shapes(_preset_config(name))


@dataclass(frozen=True)
class OfficialWeights:
    """What an official file holds for us: the preset it fits and the weights under our names."""

    preset: str
    epoch: int | None
    state_dict: dict[str, Tensor]
    config: ModelConfig  # the preset's model settings, `pretrained="none"`: the weights are here

    def build(self) -> SeqTrack:
        """The model with these weights (strict load; built on the meta device, then assigned).

        In train mode like any fresh module: call `.eval()` for inference.
        """
        with torch.device("meta"):
            model = SeqTrack(self.config)
        model.load_state_dict(self.state_dict, strict=True, assign=True)
        if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
            raise RuntimeError("SeqTrack holds a tensor outside its state dict: build it off the meta device")
        return model


_Opened = tuple[Any, Archive]  # what `open_archive` returns: the unpickled container and its archive


def _open_official(path: Path) -> _Opened | None:
    """The file's container (its data.pkl read once, tensors still refs) when it is an official
    checkpoint; None for any other file, or one refused by the reader (the caller's next reader says
    why, in one line)."""
    try:
        obj, archive = open_archive(path)
    except (TorchZipError, OSError):
        return None
    return (obj, archive) if official.net_of(obj) is not None else None


def is_official_checkpoint(obj_or_path: Any) -> bool:
    """Whether a loaded object, or a file (read without its tensor data), is an official checkpoint."""
    if isinstance(obj_or_path, (str, os.PathLike)):
        return _open_official(Path(obj_or_path)) is not None
    return official.net_of(obj_or_path) is not None


def read_official(path: str | os.PathLike[str], preset: str | None = None) -> OfficialWeights:
    """Read an official SeqTrack file: its preset (inferred from the shapes unless given), epoch and
    weights under our names. Raises `OfficialCheckpointError` (one line) when it does not fit.

    The shapes are checked before any tensor data is read, and only the `net` tensors are read.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise OfficialCheckpointError(f"official checkpoint {path} does not exist or is not a file")
    try:
        opened = open_archive(path)
    except TorchZipError as exc:
        raise OfficialCheckpointError(str(exc)) from exc
    return _official_weights(path, opened, preset)


def _official_weights(path: Path, opened: _Opened, preset: str | None) -> OfficialWeights:
    """`read_official` of a file already opened: its tensors are read here, each storage once."""
    obj, archive = opened
    try:
        net = official.require_net(obj, path)
        not_tensors = [k for k, v in net.items() if not isinstance(v, TensorRef)]
        if not_tensors:
            raise OfficialCheckpointError(f"{path}: net[{not_tensors[0]!r}] is not a tensor")
        shapes = {k: v.size for k, v in net.items()}
        name = official.infer_preset(shapes, official_preset_shapes) if preset is None else preset
        official.check_preset(shapes, name, official_preset_shapes)
        tensors = materialise(net, archive)
    except TorchZipError as exc:
        raise OfficialCheckpointError(str(exc)) from exc
    cfg = _preset_config(name)
    floats = {k: official.as_float32(k, t) for k, t in tensors.items()}
    return OfficialWeights(name, official.epoch_of(obj), official.from_official_state_dict(floats, cfg), cfg)


# ---------------------------------------------------------------- trained weights, for evaluation


@dataclass(frozen=True)
class TrainedWeights:
    """What evaluation needs from a checkpoint: our training checkpoints and official release files."""

    model: ModelConfig
    state_dict: dict[str, Any]
    preset: str
    seed: int
    epoch: int | None
    data: DataConfig  # the training run's data settings (defaults for an official file)
    dataset_info: dict[str, Any]
    train_run_id: str
    official: bool = False


def load_trained_weights(path: Path, preset: str | None) -> TrainedWeights:
    """Our `epoch_N.ckpt` (read by `train.checkpoints`) or an official SeqTrack file (read without
    running any of its code, the preset inferred from the shapes unless given). Either file's data.pkl
    is read once by each reader, and our checkpoint's weights must fit its model config (checked on
    the meta device) before anything builds that model."""
    opened = _open_official(path)
    if opened is not None:
        try:
            weights = _official_weights(path, opened, preset)
        except OfficialCheckpointError as exc:
            raise ConfigError(str(exc)) from None
        return TrainedWeights(
            weights.config, weights.state_dict, weights.preset, 0, weights.epoch, DataConfig(), {}, "", True
        )
    ckpt = checkpoints.load(path)
    if preset is not None and preset != ckpt.settings.preset:
        raise ConfigError(
            f"preset={preset} but {path} was trained with preset {ckpt.settings.preset}: drop -P preset"
        )
    check_fits(ckpt, path)
    return TrainedWeights(
        ckpt.settings.model,
        ckpt.model_state_dict,
        ckpt.settings.preset,
        ckpt.settings.train.seed,
        ckpt.epoch,
        ckpt.settings.data,
        ckpt.dataset_info,
        ckpt.mlflow_run_id,
    )


class WeightsError(ValueError):
    """Trained weights that cannot be rebuilt into a model: one line naming the problem and the fix."""


def model_from_weights(model_cfg: ModelConfig, state_dict: Mapping[str, Tensor]) -> SeqTrack:
    """The model of `model_cfg` with these weights (`TrainedWeights.model` / `.state_dict`), in train
    mode like any fresh module. Keys written from a DDP- or compile-wrapped model lose their prefix."""
    try:
        model_cfg = dataclasses.replace(model_cfg, pretrained="none")
        model_cfg.validate()
    except (TypeError, ConfigError) as exc:
        raise WeightsError(
            f"checkpoint model config is unusable ({exc}): use a checkpoint from training"
        ) from None
    model = build_model(model_cfg)
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state_dict.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise WeightsError(
            f"checkpoint weights do not fit its model config ({detail[:200]}): "
            "use an unmodified checkpoint from training"
        ) from None
    return model


def check_fits(ckpt: checkpoints.Checkpoint, path: Path) -> None:
    """Refuse a checkpoint whose weights do not fit its own model config before any model is built
    (checked on the meta device: a 17 KB file claiming ViT-L costs nothing), for evaluation and resume."""
    problem = weights_mismatch(ckpt.settings.model, ckpt.model_state_dict)
    if problem:
        raise checkpoints.CheckpointError(
            f"{path}: its weights do not fit its model config ({problem}): "
            "use an unmodified checkpoint from training"
        )


__all__ = [
    "check_fits",
    "OFFICIAL_PRESETS",
    "OfficialCheckpointError",
    "OfficialWeights",
    "PretrainedError",
    "PretrainedReport",
    "TrainedWeights",
    "WeightsError",
    "build_model",
    "is_official_checkpoint",
    "load_trained_weights",
    "model_from_weights",
    "official_preset_shapes",
    "official_shapes",
    "read_official",
]
