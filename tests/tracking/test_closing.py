"""The lines a run ends with: the UI command, experiment, run ids, checkpoints and download command."""

from seqtrack_mlflow.tracking.closing import closing_lines, start_line
from seqtrack_mlflow.tracking.experiment import Placement

LOCAL = Placement("seqtrack", "3", "sqlite:////home/ann/demo/mlflow.db", default_store=True)
SERVER = Placement("seqtrack", "7", "http://ann:***@mlflow.lab:5000", default_store=False)
RUNS = [("select_data", "s1"), ("train", "t1"), ("evaluate", "e1")]


def test_a_local_store_names_the_ui_command_runs_checkpoints_and_download() -> None:
    text = "\n".join(
        closing_lines(
            LOCAL,
            ("main", "m1"),
            RUNS,
            checkpoints="runs:/t1/checkpoints/",
            checkpoint="runs:/t1/checkpoints/epoch_5.ckpt",
        )
    )
    assert "mlflow ui --backend-store-uri sqlite:////home/ann/demo/mlflow.db" in text
    assert "http://127.0.0.1:5000/#/experiments/3/runs/m1" in text
    assert "'seqtrack' (id 3)" in text
    for run_id in ("m1", "s1", "t1", "e1"):
        assert run_id in text
    assert "runs:/t1/checkpoints/" in text
    # the default store: MLflow's command finds it from this folder without MLFLOW_TRACKING_URI
    assert "download: mlflow artifacts download -u runs:/t1/checkpoints/epoch_5.ckpt -d ." in text


def test_a_server_gets_its_address_and_the_uri_on_the_download_command() -> None:
    lines = closing_lines(SERVER, ("train", "t1"), checkpoints="runs:/t1/checkpoints/")
    text = "\n".join(lines)
    assert "open http://mlflow.lab:5000/#/experiments/7/runs/t1" in text  # no user:password for a browser
    assert "mlflow ui" not in text
    assert "MLFLOW_TRACKING_URI=http://ann:***@mlflow.lab:5000 mlflow artifacts download" in text
    assert "s3cret" not in text


def test_a_run_without_checkpoints_has_no_download_and_an_untracked_one_no_lines() -> None:
    text = "\n".join(closing_lines(LOCAL, ("evaluate", "e1")))
    assert "e1" in text and "download" not in text and "checkpoints" not in text
    assert closing_lines(LOCAL, ("train", None)) == []


def test_the_start_line_names_experiment_and_store() -> None:
    assert start_line(LOCAL) == "MLflow: experiment 'seqtrack' (id 3) in sqlite:////home/ann/demo/mlflow.db"


def test_a_registered_tracker_comes_last_with_the_command_to_try_it_in_the_same_experiment() -> None:
    lines = closing_lines(LOCAL, ("main", "m1"), RUNS, registered=("models:/seqtrack/2", "t1"))
    assert lines[-2] == "registered model: models:/seqtrack/2 (train run t1)"
    try_it = "try it: mlflow run . --env-manager local --experiment-name seqtrack -e track "
    assert lines[-1].startswith(try_it)
    assert lines[-1].endswith("-P checkpoint=models:/seqtrack/2")


def test_the_try_it_command_in_the_default_experiment_needs_no_flag() -> None:
    default = Placement("Default", "0", LOCAL.store, default_store=True)
    (try_it,) = [
        line
        for line in closing_lines(default, ("main", "m1"), registered=("models:/s/1", "t1"))
        if line.startswith("try it: ")
    ]
    assert "--experiment-name" not in try_it
