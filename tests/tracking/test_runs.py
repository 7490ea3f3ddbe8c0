import mlflow

from seqtrack_mlflow.tracking import RunLogger, run_context


def test_params_logged_by_mlflow_run_are_not_relogged(mlflow_uri: str) -> None:
    with mlflow.start_run() as run:
        # What `mlflow run -P lr=1e-4 -P epochs=2` logs before our script starts (or the first
        # session of a run that is now resumed with epochs=5).
        mlflow.log_params({"lr": "1e-4", "epochs": "2", "amp": "False", "window_penalty": "True"})
    logger = RunLogger(run.info.run_id)
    differing = logger.log_params(
        {"lr": 0.0001, "epochs": 5, "amp": False, "window_penalty": True, "seed": 8, "max_frames": None}
    )
    logger.log_params({"verify_frames": False})  # a key MLflow did not log: the canonical form
    params = mlflow.get_run(run.info.run_id).data.params
    assert differing == {"epochs": "2"}
    assert params["lr"] == "1e-4" and params["seed"] == "8" and params["amp"] == "False"
    assert params["window_penalty"] == "True" and params["verify_frames"] == "false"
    assert not {"resumed.amp", "resumed.window_penalty"} & set(params)
    assert params["resumed.epochs"] == "5" and "resumed.lr" not in params
    assert params["max_frames"] == "none"
    logger.log_params({"epochs": 5})  # idempotent: a second call does not raise


def test_failed_run_is_marked_failed(mlflow_uri: str) -> None:
    try:
        with run_context("train") as logger:
            run_id = logger.run_id
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert mlflow.get_run(run_id).info.status in ("FAILED", "KILLED")
    assert mlflow.active_run() is None


def test_disabled_logger_is_silent(mlflow_uri: str) -> None:
    with run_context("train", enabled=False) as logger:
        logger.log_params({"a": 1})
        logger.log_metrics({"loss": 1.0}, step=1)
    assert mlflow.search_runs(search_all_experiments=True).empty
