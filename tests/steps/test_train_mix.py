"""One short epoch on the four-dataset synthetic mix (LaSOT, GOT-10k, TrackingNet, COCO, each in its
own layout): every dataset's share of the samples follows the ratios, the counts are logged, and the
selection records every dataset's split, sequences and index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from factories import MIX_RATIOS as RATIOS
from factories import mix_data
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.config import build_settings
from seqtrack_mlflow.steps.train import run_train, training_data

SAMPLES = 20


def test_one_epoch_on_the_four_dataset_mix(tmp_path: Path, mlflow_uri: str) -> None:
    model = {"search_size": 32, "template_size": 32}
    train = {"epochs": 1, "samples_per_epoch": SAMPLES, "batch_size": 10, "seed": 8, "system_metrics": False}
    settings = build_settings(
        "tiny", model, {**train, "log_every": 20, "device": "cpu"}, mix_data(tmp_path / "data")
    )
    result = run_train(settings, output_dir=tmp_path / "out")

    run = MlflowClient().get_run(result.run_id)
    counts = {
        name: run.data.metrics[f"samples_{name}"] for name in ("lasot", "got10k", "trackingnet", "coco")
    }
    assert sum(counts.values()) == SAMPLES
    # The counts are the draws' own (each a pure function of seed, epoch, index) ...
    samples = _samples(result)
    drawn = np.bincount([samples.draw(i).dataset for i in range(SAMPLES)], minlength=4)
    assert list(counts.values()) == drawn.tolist()
    # ... and follow the ratios: over 4,000 draws of the same sampler, within 2.5 points of each share.
    share = np.bincount([samples.draw(i).dataset for i in range(4000)], minlength=4) / 4000
    np.testing.assert_allclose(share, np.array(RATIOS) / sum(RATIOS), atol=0.025)

    log = (result.out_dir / "training_log.txt").read_text()
    assert "Epoch 1 samples per dataset : lasot " in log
    assert run.data.tags["data.datasets"] == "lasot,got10k,trackingnet,coco"
    assert run.data.params["datasets"] == "official" and run.data.params["got10k_split"] == "vottrain"
    summary = json.loads((result.out_dir / "dataset_summary.json").read_text())
    assert summary["mix"] == {"datasets": ["lasot", "got10k", "trackingnet", "coco"], "ratios": list(RATIOS)}
    got = summary["datasets"]["got10k"]
    assert (got["split"], got["sequences"], got["expected"], got["missing"]) == ("vottrain", 3, 7086, 7083)
    assert summary["datasets"]["coco"]["frames"] == summary["datasets"]["coco"]["sequences"]
    assert "## Training mix" in (result.out_dir / "dataset_summary.md").read_text()
    names = {d.dataset.name for d in run.inputs.dataset_inputs}
    assert {"got-10k-vottrain", "trackingnet-train", "coco-2017-train2017"} <= names


def _samples(result):
    from seqtrack_mlflow.inputs.sampling import TrainingSamples

    s = result.settings
    samples = TrainingSamples(training_data(result.selection), s.model, s.sampling, s.train.seed, 4000)
    samples.set_epoch(1)
    return samples


def test_a_later_run_reads_back_the_mix_a_select_data_run_recorded(tmp_path: Path, mlflow_uri: str) -> None:
    from seqtrack_mlflow.steps.lineage import selection_from_run
    from seqtrack_mlflow.steps.select_data import run_select_data

    data = mix_data(tmp_path / "data", trackingnet_chunks="1")
    chosen = run_select_data(data, seed=8, output_dir=tmp_path / "out")
    again = selection_from_run(chosen.run_id, tmp_path / "later")
    first, second = training_data(chosen.selection), training_data(again)
    assert first.names == second.names == ("lasot", "got10k", "trackingnet", "coco")
    for a, b in zip(first.pools, second.pools, strict=True):
        assert [a.sequences[i].name for i in range(len(a.sequences))] == [
            b.sequences[i].name for i in range(len(b.sequences))
        ]
        assert (a.ratio, a.images) == (b.ratio, b.images)
    assert {s.class_name for s in second.pools[2].sequences} == {"TRAIN_1"}  # the chunk subset
    note = MlflowClient().get_run(chosen.run_id).data.tags["mlflow.note.content"]
    assert (
        note.startswith("Selected airplane (seed 8) from synthetic LaSOT-format data")
        and "GOT-10k vottrain" in note
    )
