"""A job's run found again on a real (SQLite) store: the most recent unfinished run with the job's key
and entry point; a finished one only when none is unfinished; never the run `mlflow run` opened for this
process, another job's, another entry point's, or one in another experiment."""

from __future__ import annotations

import time

import mlflow
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.tracking import find_job_run, job_tags, nested_runs


def make_run(key: str, status: str, entry_point: str = "train", experiment: str = "0") -> str:
    client = MlflowClient()
    run = client.create_run(experiment, tags=job_tags(key, entry_point))
    if status != "RUNNING":
        client.set_terminated(run.info.run_id, status)
    time.sleep(0.01)  # distinct start times
    return run.info.run_id


def test_no_run_for_a_new_job(mlflow_uri: str) -> None:
    make_run("other", "KILLED")
    assert find_job_run("job", "train") is None


def test_the_most_recent_unfinished_run_even_after_a_newer_finished_one(mlflow_uri: str) -> None:
    make_run("job", "FAILED")
    killed = make_run("job", "KILLED")
    make_run("job", "FINISHED")
    found = find_job_run("job", "train")
    assert found is not None and (found.run_id, found.status, found.finished) == (killed, "KILLED", False)


def test_a_running_run_is_a_candidate_the_ownership_rule_decides(mlflow_uri: str) -> None:
    running = make_run("job", "RUNNING")
    assert find_job_run("job", "train").run_id == running


def test_a_finished_job_is_reported_finished(mlflow_uri: str) -> None:
    done = make_run("job", "FINISHED")
    found = find_job_run("job", "train")
    assert found is not None and found.run_id == done and found.finished


def test_the_run_opened_for_this_process_and_other_entry_points_are_not_the_jobs(mlflow_uri: str) -> None:
    mine = make_run("job", "RUNNING")
    make_run("job", "KILLED", entry_point="main")
    assert find_job_run("job", "train", exclude=mine) is None


def test_only_the_experiment_the_run_would_go_to(mlflow_uri: str, monkeypatch) -> None:
    other = mlflow.create_experiment("other")
    make_run("job", "KILLED", experiment=other)
    assert find_job_run("job", "train") is None
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "other")
    assert find_job_run("job", "train") is not None
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "not-created-yet")
    assert find_job_run("job", "train") is None


def test_a_parents_nested_runs_by_name_the_most_recent_of_each(mlflow_uri: str) -> None:
    client = MlflowClient()
    parent = client.create_run("0", tags=job_tags("job", "main")).info.run_id
    ids = {}
    for name, status in (("select_data", "FINISHED"), ("train", "KILLED"), ("train", "FINISHED")):
        run = client.create_run("0", tags={"mlflow.parentRunId": parent, "mlflow.runName": name})
        client.set_terminated(run.info.run_id, status)
        ids[name] = run.info.run_id
        time.sleep(0.01)
    client.create_run("0", tags={"mlflow.runName": "train"})  # not a child of this parent
    found = nested_runs(parent)
    assert {k: (v.run_id, v.status) for k, v in found.items()} == {
        "select_data": (ids["select_data"], "FINISHED"),
        "train": (ids["train"], "FINISHED"),
    }
