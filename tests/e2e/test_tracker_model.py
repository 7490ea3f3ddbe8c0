"""Issue 21, part 2: the tracker as an MLflow model, end to end in a SQLite store. `main` (the CLI, in
process, with a short real training) logs the train run's tracker as its model `model` and registers it:
version 1, then 2; it names them and the `track` command in its closing lines. The registered model loads
with `mlflow.pyfunc.load_model` and predicts the local tracker's boxes; `mlflow models serve` answers
/invocations with the same; `models:/...` works as evaluate's and track's checkpoint and as train's
pretrained weights; a model op replayed by `seqtrack-mlflow sync` logs the same kind of model."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from factories import decoded, outbox, reference_boxes, small_settings
from mlflow.tracking import MlflowClient
from PIL import Image
from services import free_port, start_model_server, stop_process_group

from seqtrack_mlflow.cli import main
from seqtrack_mlflow.config import TrackerConfig, VideoConfig, replace
from seqtrack_mlflow.evaluation.predict import example_request, load_tracker, model_config, track_request
from seqtrack_mlflow.model.factory import build_model
from seqtrack_mlflow.model.references import resolve_checkpoint, resolve_pretrained
from seqtrack_mlflow.steps.evaluate import run_evaluate
from seqtrack_mlflow.steps.track import run_track
from seqtrack_mlflow.steps.train import run_train
from seqtrack_mlflow.tracking import TrackingError, register_tracker, sync_run_folder
from seqtrack_mlflow.tracking.registry import run_model_id
from seqtrack_mlflow.train import checkpoints

# main's tracker settings: an update every 3rd frame, whatever the confidence (the model keeps them).
MAIN_TRACKER = TrackerConfig(update_interval=3, update_threshold=0.0, max_frames=8)
MAIN = [
    "main", "--seed", "8", "--source", "synthetic", "--classes", "airplane,bird",
    "--synthetic_sequences", "2", "--synthetic_frames", "30", "--search_size", "32", "--template_size",
    "32", "--epochs", "1", "--samples_per_epoch", "20", "--batch_size", "10", "--log_every", "10",
    "--system_metrics", "false", "--device", "cpu", "--max_frames", "8", "--eval_videos", "0",
    "--update_interval", "3", "--update_threshold", "0.0",
]  # fmt: skip


@pytest.fixture(scope="module")
def mains(tmp_path_factory: pytest.TempPathFactory, _migrated_db: Path):
    """Two `seqtrack-mlflow main` runs in one store: (store URI, folder, [their CLI results])."""
    tmp = tmp_path_factory.mktemp("registry")
    shutil.copy(_migrated_db, tmp / "mlflow.db")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    env = {"MLFLOW_TRACKING_URI": uri, "SEQTRACK_CACHE": str(tmp / "cache")}
    before, cwd = {k: os.environ.get(k) for k in env}, os.getcwd()
    os.environ.update(env)
    mlflow.set_tracking_uri(uri)
    os.chdir(tmp)
    try:
        results = [CliRunner().invoke(main, [*MAIN, "--output_dir", str(tmp / "out")]) for _ in range(2)]
    finally:
        os.chdir(cwd)
        for key, value in before.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    for result in results:
        assert result.exit_code == 0, result.output[-3000:]
    return uri, tmp, results


@pytest.fixture
def store(mains, monkeypatch: pytest.MonkeyPatch) -> str:
    """This test talks to the module's store (the CLI, mlflow.*, and processes it starts)."""
    uri, tmp, _ = mains
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SEQTRACK_CACHE", str(tmp / "cache"))
    mlflow.set_tracking_uri(uri)
    return uri


def main_runs() -> list:
    runs = MlflowClient().search_runs(["0"], "tags.`mlflow.runName` = 'main'", order_by=["start_time ASC"])
    assert len(runs) == 2
    return runs


def jpeg_request(frames: list[np.ndarray], box: str) -> dict:
    encoded = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=90)
        encoded.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    return {"frames": encoded, "box": [float(v) for v in box.split(",")]}


def final_checkpoint(train_run: str, dst: Path) -> Path:
    return Path(
        mlflow.artifacts.download_artifacts(f"runs:/{train_run}/checkpoints/epoch_1.ckpt", dst_path=str(dst))
    )


def test_main_registers_version_1_then_2_and_says_how_to_try_it(mains, store: str) -> None:
    _, _, results = mains
    client = MlflowClient()
    for version, (run, result) in enumerate(zip(main_runs(), results, strict=True), start=1):
        train_run = run.data.tags["seqtrack.train_run_id"]
        lines = result.stdout.splitlines()
        assert lines[-2] == f"registered model: models:/seqtrack/{version} (train run {train_run})", lines[
            -3:
        ]
        assert lines[-1] == (
            "try it: mlflow run . --env-manager local -e track -P video=<your video> -P box=x,y,w,h "
            f"-P checkpoint=models:/seqtrack/{version}"
        )
        assert "warning" not in result.stderr, result.stderr
        tags, params = run.data.tags, run.data.params
        assert tags["seqtrack.registered_model"] == "seqtrack" and params["model_name"] == "seqtrack"
        assert tags["seqtrack.registered_model_version"] == str(version)
        registered = client.get_model_version("seqtrack", str(version))
        assert registered.run_id == train_run and registered.tags["seqtrack.main_run_id"] == run.info.run_id


def test_the_train_run_logs_its_tracker_and_the_registered_model_predicts_its_boxes(
    mains, store: str, sequence, tmp_path: Path
) -> None:
    train_run = main_runs()[0].data.tags["seqtrack.train_run_id"]
    model_id = run_model_id(train_run)
    logged = MlflowClient().get_logged_model(model_id)
    assert logged.name == "model" and logged.source_run_id == train_run
    ckpt = final_checkpoint(train_run, tmp_path)
    folder = Path(
        mlflow.artifacts.download_artifacts(f"runs:/{train_run}/model", dst_path=str(tmp_path / "m"))
    )
    assert (folder / "artifacts" / "epoch_1.ckpt").read_bytes() == ckpt.read_bytes()  # the final checkpoint
    assert {"MLmodel", "input_example.json", "serving_input_example.json", "requirements.txt"} <= {
        p.name for p in folder.iterdir()
    }

    model = mlflow.pyfunc.load_model("models:/seqtrack/1")
    assert model.model_config == model_config(MAIN_TRACKER)  # main's tracker settings
    assert [c.name for c in model.metadata.get_input_schema().inputs] == ["video", "frames", "box"]
    request = jpeg_request(sequence[0], sequence[1])
    local = track_request(load_tracker(ckpt, model_config(MAIN_TRACKER), "cpu"), request)
    predicted = model.predict(request)
    pd.testing.assert_frame_equal(predicted, local)
    assert len(predicted) == len(sequence[0]) and predicted["confidence"].iloc[0] is None


def test_evaluate_and_track_take_a_registered_model(
    mains, store: str, clip: Path, sequence, tmp_path: Path
) -> None:
    train_run = main_runs()[0].data.tags["seqtrack.train_run_id"]
    tracker = TrackerConfig(max_frames=8)
    by_name = run_evaluate("models:/seqtrack/1", tracker, device="cpu", output_dir=tmp_path / "a")
    by_file = run_evaluate(
        f"runs:/{train_run}/checkpoints/epoch_1.ckpt", tracker, device="cpu", output_dir=tmp_path / "b"
    )
    assert by_name.metrics["auc"] == by_file.metrics["auc"]
    evaluated = MlflowClient().get_run(by_name.run_id).data
    assert evaluated.params["checkpoint"] == "models:/seqtrack/1"
    assert evaluated.tags["seqtrack.train_run_id"] == train_run

    MlflowClient().set_registered_model_alias("seqtrack", "best", "2")
    video = VideoConfig(video=str(clip), box=sequence[1])
    result = run_track(video, "models:/seqtrack@best", TrackerConfig(), output_dir=tmp_path / "track")
    ckpt = final_checkpoint(main_runs()[1].data.tags["seqtrack.train_run_id"], tmp_path / "v2")
    boxes = np.loadtxt(result.out_dir / "boxes.txt", delimiter=",")
    assert np.allclose(boxes, reference_boxes(ckpt, decoded(clip), sequence[1]), atol=0.0051, rtol=0)


def test_train_takes_a_registered_model_as_pretrained_weights(mains, store: str, tmp_path: Path) -> None:
    path = resolve_pretrained("models:/seqtrack/1", tmp_path / "dl")
    saved = checkpoints.load(path)
    model = build_model(replace(saved.settings.model, pretrained=str(path)))
    encoder = {k: v for k, v in saved.model_state_dict.items() if k.startswith("encoder.")}
    assert model.pretrained_report.loaded > 0
    for key, value in encoder.items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0, msg=key)

    settings = small_settings(1)
    settings = replace(settings, model=replace(settings.model, pretrained="models:/seqtrack/1"))
    trained = run_train(settings, output_dir=tmp_path / "out")
    assert MlflowClient().get_run(trained.run_id).data.params["pretrained"] == "models:/seqtrack/1"


def test_resume_from_a_registered_model_continues_its_train_run(mains, store: str, tmp_path: Path) -> None:
    train_run = main_runs()[1].data.tags["seqtrack.train_run_id"]
    resumed = run_train(
        small_settings(2), resume="models:/seqtrack/2", given={"epochs": 2}, output_dir=tmp_path
    )
    assert resumed.run_id == train_run and resumed.outcome.epochs_done == 2
    epochs = [m.step for m in MlflowClient().get_metric_history(train_run, "epoch_loss")]
    assert epochs == [20, 40]  # epoch 1 from main, epoch 2 from the resume, in the same run
    latest = mlflow.pyfunc.load_model(f"models:/{run_model_id(train_run)}")  # the resumed run's model
    assert latest.model_config == model_config(MAIN_TRACKER)  # main's tracker settings, kept
    assert (
        Path(latest.metadata.flavors["python_function"]["artifacts"]["checkpoint"]["path"]).name
        == "epoch_2.ckpt"
    )


def test_the_served_model_answers_invocations_with_the_pyfunc_boxes(
    mains, store: str, sequence, tmp_path: Path
) -> None:
    request = jpeg_request(sequence[0][:6], sequence[1])
    expected = mlflow.pyfunc.load_model("models:/seqtrack/1").predict(request).to_dict(orient="records")
    port = free_port()
    server = start_model_server("models:/seqtrack/1", port, tmp_path / "serve.log")
    try:
        answer = post(port, {"inputs": request})
        with pytest.raises(urllib.error.HTTPError) as refused:
            post(port, {"inputs": {"frames": request["frames"], "box": [1, 2, 3]}})
    finally:
        stop_process_group(server)
    assert list(answer) == ["predictions"] and len(answer["predictions"]) == len(expected)
    for got, want in zip(answer["predictions"], expected, strict=True):
        assert got.keys() == want.keys() and got["frame"] == want["frame"]
        assert got["confidence"] == want["confidence"] or got["confidence"] == pytest.approx(
            want["confidence"]
        )
        assert [got[k] for k in "xywh"] == pytest.approx([want[k] for k in "xywh"], abs=1e-9)
    assert answer["predictions"][0]["confidence"] is None  # JSON null, not NaN
    assert refused.value.code == 400
    body = json.loads(refused.value.read())
    assert (
        body["error_code"] == "INVALID_PARAMETER_VALUE"
        and "box=[1, 2, 3] is invalid: give" in body["message"]
    )


def post(port: int, body: dict) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as response:
        return json.loads(response.read())


def test_a_model_op_replayed_by_sync_logs_the_tracker(
    tmp_path: Path, mlflow_uri: str, tiny_ckpt: Path
) -> None:
    """After an outage the model waits in the run's outbox; `sync` logs it. Then the registry's one-line
    refusals: an unknown name, version or alias lists what there is."""
    settings = TrackerConfig(update_interval=2, update_threshold=0.0, window_penalty=False)
    op = {"op": "model", "path": "checkpoints/epoch_1.ckpt", "config": model_config(settings)}
    run_id, folder = outbox(tmp_path, [op])
    shutil.copy(tiny_ckpt, folder / "checkpoints" / "epoch_1.ckpt")
    assert "status FINISHED" in sync_run_folder(folder)
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    # MLflow logs the model's config as params of its run: spelled as every run logs its settings.
    assert mlflow.get_run(run_id).data.params["window_penalty"] == "false"
    request = {**example_request(frames=4), "box": [20, 16, 16, 16]}  # integers: the schema takes them
    expected = track_request(load_tracker(tiny_ckpt, model_config(settings), "cpu"), request)
    pd.testing.assert_frame_equal(model.predict(request), expected)

    first, second = register_tracker(run_id, "tiny"), register_tracker(run_id, "tiny")
    assert (first.uri, second.uri) == ("models:/tiny/1", "models:/tiny/2")
    path, source = resolve_checkpoint("models:/tiny/2", tmp_path / "downloads")
    assert path.read_bytes() == tiny_ckpt.read_bytes() and source == run_id
    for uri, needle in (
        ("models:/nope/1", "no registered model 'nope' in the tracking store sqlite:"),
        ("models:/tiny/7", "registered model 'tiny' has no version 7 in sqlite:"),
        ("models:/tiny@prod", "registered model 'tiny' has no alias @prod in sqlite:"),
    ):
        result = CliRunner().invoke(main, ["evaluate", "--checkpoint", uri, "--output_dir", str(tmp_path)])
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
        assert needle in result.stderr, result.stderr
    with pytest.raises(TrackingError, match=r"\(registered: tiny\)"):
        resolve_checkpoint("models:/x/1", tmp_path)
    with pytest.raises(TrackingError, match=r"\(versions: 1, 2\)"):
        resolve_checkpoint("models:/tiny/3", tmp_path)
