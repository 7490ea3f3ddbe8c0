"""Official SeqTrack release files where a checkpoint is accepted: `evaluate -P checkpoint=` and
`train -P pretrained=` (whole-model init)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from factories import official_container, official_training_code, tiny_model

from seqtrack_mlflow.cli import main
from seqtrack_mlflow.config import DataConfig, TrackerConfig, build_settings, replace
from seqtrack_mlflow.model.factory import PretrainedError, build_model
from seqtrack_mlflow.model.official import to_official_state_dict
from seqtrack_mlflow.steps.evaluate import run_evaluate
from seqtrack_mlflow.train import checkpoints
from seqtrack_mlflow.train.checkpoints import Checkpoint

DATA = {"source": "synthetic", "classes": "airplane,bird", "synthetic_sequences": 2, "synthetic_frames": 10}


@pytest.fixture
def official_file(tmp_path: Path):
    model = tiny_model()
    path = tmp_path / "SEQTRACK_ep0500.pth.tar"
    with official_training_code(tmp_path) as stub:
        torch.save(official_container(to_official_state_dict(model), stub), path)
    return model, path


def test_evaluate_an_official_file_equals_our_checkpoint_of_the_same_weights(
    official_file, tmp_path: Path, mlflow_uri: str
) -> None:
    model, path = official_file
    settings = build_settings("tiny", {}, {}, DataConfig(**DATA))
    ours = checkpoints.save(
        Checkpoint(1, settings, model.state_dict(), {}, {}, 0.0, 0.0, {}, {}),
        tmp_path / "epoch_1.ckpt",
    )
    cfg = TrackerConfig(max_frames=5, baselines="none", eval_videos=0)  # the model's boxes are the point
    official = run_evaluate(
        str(path), cfg, data_override=DATA, preset="tiny", device="cpu", output_dir=tmp_path / "a"
    )
    own = run_evaluate(str(ours), cfg, device="cpu", output_dir=tmp_path / "b")
    assert official.metrics["auc"] == own.metrics["auc"]
    for name in ("airplane-1.txt", "bird-2.txt"):
        np.testing.assert_array_equal(
            np.loadtxt(official.out_dir / "results" / name, delimiter=","),
            np.loadtxt(own.out_dir / "results" / name, delimiter=","),
        )


def test_an_official_file_inits_the_whole_model_for_training(official_file) -> None:
    model, path = official_file
    built = build_model(replace(model.cfg, pretrained=str(path)))
    assert all(torch.equal(built.state_dict()[k], v) for k, v in model.state_dict().items())
    with pytest.raises(PretrainedError, match="search_size 64 \\(file: 128\\).*-P preset=tiny") as err:
        build_model(replace(model.cfg, pretrained=str(path), search_size=64))
    assert "\n" not in str(err.value)


def test_a_file_that_fits_no_official_preset_is_one_line_on_the_cli(
    official_file, tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, path = official_file  # a tiny-sized file: no official preset fits without -P preset=tiny
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(path), "--source", "synthetic"])
    assert result.exit_code == 2, result.output
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error: ")]
    assert "fits no" in line or "expected" in line, line
    assert not (tmp_path / "outputs").exists()
