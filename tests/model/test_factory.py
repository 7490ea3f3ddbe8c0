"""The model factory: the one funnel from settings or a weights file to a SeqTrack, and the seams
around it (the model class knows no weight files; the official mapping and the zip reader know no model)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from seqtrack_mlflow.config import PRESETS, ConfigError, DataConfig, build_settings, preset, replace
from seqtrack_mlflow.model import factory
from seqtrack_mlflow.model.factory import build_model, load_trained_weights
from seqtrack_mlflow.model.official import from_official_state_dict, our_key, to_official_state_dict
from seqtrack_mlflow.model.seqtrack import SeqTrack
from seqtrack_mlflow.train import checkpoints
from seqtrack_mlflow.train.checkpoints import Checkpoint

MODEL_DIR = Path(factory.__file__).parent
DATA = DataConfig(source="synthetic", classes="airplane,bird")


pytestmark = pytest.mark.usefixtures("one_thread")  # small ops on a shared 2-core machine


@pytest.fixture(scope="module")
def tiny() -> SeqTrack:
    torch.manual_seed(0)
    return SeqTrack(preset("tiny")[0]).eval()


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_build_model_without_weights_is_the_plain_module_with_the_same_init():
    cfg = replace(preset("tiny")[0], pretrained="none")
    torch.manual_seed(3)
    built = build_model(cfg)
    torch.manual_seed(3)
    assert same_state(built.state_dict(), SeqTrack(cfg).state_dict())
    assert built.pretrained_report is None


def test_our_checkpoint_gives_back_its_settings_and_the_same_weights(tiny: SeqTrack, tmp_path: Path):
    settings = build_settings("tiny", {}, {"seed": 7}, DATA)
    info = {"classes": ["airplane", "bird"], "source": "synthetic"}
    ckpt = Checkpoint(3, settings, tiny.state_dict(), {}, {}, 0.5, 0.1, info, {}, mlflow_run_id="abc")
    path = checkpoints.save(ckpt, tmp_path / "epoch_3.ckpt")

    trained = load_trained_weights(path, None)
    assert same_state(trained.state_dict, tiny.state_dict())
    assert (trained.model, trained.preset, trained.seed, trained.epoch) == (settings.model, "tiny", 7, 3)
    assert (trained.data, trained.dataset_info, trained.train_run_id) == (DATA, info, "abc")
    assert not trained.official
    assert load_trained_weights(path, "tiny").state_dict.keys() == trained.state_dict.keys()
    with pytest.raises(ConfigError, match="trained with preset tiny: drop -P preset"):
        load_trained_weights(path, "b256")


def test_an_official_file_gives_back_the_same_weights(tiny: SeqTrack, tmp_path: Path):
    path = tmp_path / "SEQTRACK_ep0500.pth.tar"
    torch.save({"net": to_official_state_dict(tiny), "epoch": 500}, path)

    trained = load_trained_weights(path, "tiny")
    assert trained.official and (trained.preset, trained.epoch, trained.seed) == ("tiny", 500, 0)
    assert trained.model == replace(tiny.cfg, pretrained="none")
    assert (trained.data, trained.dataset_info, trained.train_run_id) == (DataConfig(), {}, "")
    assert same_state(trained.state_dict, tiny.state_dict())
    # The whole-model init of training reads the same file to the same weights.
    assert same_state(build_model(replace(tiny.cfg, pretrained=str(path))).state_dict(), tiny.state_dict())
    with pytest.raises(ConfigError, match="fits no preset"):  # tiny is no official preset
        load_trained_weights(path, None)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_official_names_map_back_to_ours_for_every_preset(name: str):
    cfg = preset(name)[0]
    with torch.device("meta"):
        ours = SeqTrack(cfg).state_dict()
    official = to_official_state_dict(ours)
    back = from_official_state_dict(official, cfg)
    assert back.keys() == ours.keys()
    assert all(back[k].shape == v.shape for k, v in ours.items())
    assert all(our_key(k) in ours for k in official if k not in ("encoder.body.pos_embed", "pos_embed"))


def imported_modules(path: Path) -> set[str]:
    """The package modules a source file imports (relative imports resolved within model/)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level == 1:
                base = f"seqtrack_mlflow.model.{base}" if base else "seqtrack_mlflow.model"
            names |= {base, *(f"{base}.{alias.name}" for alias in node.names)}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return names


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("seqtrack", ("factory", "official", "torch_zip")),
        ("official", ("factory", "seqtrack", "torch_zip")),
        ("torch_zip", ("factory", "seqtrack", "official")),
    ],
)
def test_the_model_class_the_official_mapping_and_the_reader_stay_apart(module: str, forbidden: tuple):
    imported = imported_modules(MODEL_DIR / f"{module}.py")
    assert not {f"seqtrack_mlflow.model.{name}" for name in forbidden} & imported
