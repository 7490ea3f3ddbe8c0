"""Whole sweeps: one in process whose runs compare cleanly, pruning included, and two sweep processes
sharing one PostgreSQL-backed study."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from factories import SWEEP_TRACKER, sweep_settings
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.config import SweepConfig
from seqtrack_mlflow.sweep.space import resolve_space, suggest
from seqtrack_mlflow.sweep.study import SweepSampler
from seqtrack_mlflow.tracking.registry import run_model_id
from seqtrack_mlflow.workflows.sweep import run_sweep

optuna.logging.set_verbosity(optuna.logging.WARNING)


def seed_where(space_text: str, want: list) -> int:
    """A seed whose first trials draw `want` for the space's only dimension (draws depend on the seed)."""
    settings = sweep_settings()
    space = resolve_space(space_text, settings, SWEEP_TRACKER, set())
    (name,) = space
    for seed in range(200):
        study = optuna.create_study(direction="maximize", sampler=SweepSampler(seed))
        got = []
        for _ in want:
            trial = study.ask()
            got.append(suggest(trial, space)[name])
            study.tell(trial, 1.0)
        if got == want:
            return seed
    raise AssertionError(f"no seed draws {want}")


def test_a_sweep_logs_trials_that_compare_and_the_best_one(tmp_path: Path, mlflow_uri: str) -> None:
    # Trial 0 trains at a sane rate and completes; trial 1 gets a rate that wrecks training and is
    # pruned after its first epoch (MedianPruner after 1 complete trial, no warm-up); trial 2 is sane.
    space = '{"lr": [0.0005, 1000.0]}'
    seed = seed_where(space, [0.0005, 1000.0, 0.0005])
    start = time.time()
    result = run_sweep(
        sweep_settings(seed=seed),
        SWEEP_TRACKER,
        SweepConfig(trials=3, space=space, prune_startup_trials=1, prune_warmup_epochs=0),
        output_dir=tmp_path / "out",
    )
    print(f"sweep of 3 trials: {time.time() - start:.1f} s")
    assert [t.state for t in result.trials] == ["COMPLETE", "PRUNED", "COMPLETE"]

    client = MlflowClient()
    parent = client.get_run(result.run_id)
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'", max_results=100
    )
    by_name = {r.info.run_name: r for r in children}
    assert set(by_name) == {
        "select_data",
        "trial-0-train",
        "trial-0-evaluate",
        "trial-1-train",
        "trial-2-train",
        "trial-2-evaluate",
    }
    select_run = by_name["select_data"].info.run_id
    for t in result.trials:
        train = by_name[f"trial-{t.number}-train"]
        assert float(train.data.params["lr"]) == t.params["lr"]  # the trial's params, own names
        assert train.data.params["data"] == select_run and train.data.tags["seqtrack.trial"] == str(t.number)
        if t.state == "COMPLETE":
            evaluate = by_name[f"trial-{t.number}-evaluate"]
            assert evaluate.info.status == "FINISHED" and "auc" in evaluate.data.metrics
            assert float(evaluate.data.params["lr"]) == t.params["lr"]  # params beside the AUC
            assert evaluate.data.metrics["auc"] == pytest.approx(t.value)
    pruned = by_name["trial-1-train"]
    assert pruned.info.status == "KILLED"
    assert (
        pruned.data.tags["seqtrack.pruned"] == "true" and pruned.data.tags["seqtrack.pruned_at_epoch"] == "1"
    )
    assert "epoch_iou" in pruned.data.metrics and "epoch_iou" in by_name["trial-0-train"].data.metrics
    # Pruning stopped training: one epoch of the two, and its epoch-1 checkpoint was never written.
    assert [m.step for m in client.get_metric_history(pruned.info.run_id, "epoch_iou")] == [40]

    best = max((t for t in result.trials if t.value is not None), key=lambda t: t.value)
    assert result.best_number == best.number
    assert parent.data.params["best.trial"] == str(best.number)
    assert float(parent.data.params["best.lr"]) == best.params["lr"]
    assert parent.data.metrics["best_auc"] == pytest.approx(best.value)
    assert (
        parent.data.tags["seqtrack.best_evaluate_run_id"]
        == by_name[f"trial-{best.number}-evaluate"].info.run_id
    )
    assert parent.data.metrics["trials_pruned"] == 1 and parent.data.metrics["trials_complete"] == 2
    # The best trial's tracker is registered (version 1 of `seqtrack`); a pruned trial logged no model.
    assert result.registered is not None and result.registered.uri == "models:/seqtrack/1"
    best_train = by_name[f"trial-{best.number}-train"].info.run_id
    assert client.get_model_version("seqtrack", "1").run_id == best_train == result.registered.run_id
    assert (
        parent.data.tags["seqtrack.registered_model"] == "seqtrack"
        and parent.data.params["model_name"] == "seqtrack"
    )
    assert parent.data.tags["seqtrack.registered_model_version"] == "1"
    assert run_model_id(pruned.info.run_id) is None and run_model_id(best_train) is not None
    assert "lr" not in parent.data.params and json.loads(parent.data.params["space"]) == {
        "lr": {"choices": [0.0005, 1000.0]}
    }
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "sweep")}
    assert {
        "sweep/optimization_history.png",
        "sweep/param_importances.png",
        "sweep/intermediate_values.png",
        "sweep/trials.csv",
        "sweep/space.json",
    } <= artifacts


def sweep_process(storage: str, out: Path, *extra: str) -> subprocess.Popen:
    args = [
        "sweep", "--trials", "2", "--storage", storage, "--study_name", "shared", "--output_dir", str(out),
        "--source", "synthetic", "--classes", "airplane,bird", "--synthetic_sequences", "2",
        "--synthetic_frames", "30", "--search_size", "32", "--template_size", "32", "--epochs", "1",
        "--samples_per_epoch", "40", "--batch_size", "8", "--log_every", "40", "--system_metrics", "false",
        "--device", "cpu", "--max_frames", "5", "--seed", "8", "--console", "bar",
        "--space", '{"lr": {"low": 1e-4, "high": 1e-2, "log": true}}', *extra,
    ]  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "seqtrack_mlflow.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_sweep_processes_share_one_postgres_study(tmp_path: Path, mlflow_uri: str) -> None:
    from services import Unavailable, skip_or_fail_on_ci
    from team_services import postgres_server

    try:
        server = postgres_server()
        storage = server.__enter__()
    except Unavailable as exc:
        skip_or_fail_on_ci(f"PostgreSQL cannot start here: {exc}")
    try:
        # Create the study first, so the two processes only load it (both creating it at once is a race
        # Optuna resolves, but one of them would print a warning).
        optuna.create_study(storage=storage, study_name="shared", direction="maximize")
        procs = [sweep_process(storage, tmp_path / f"out{i}") for i in range(2)]
        outputs = [p.communicate(timeout=300)[0] for p in procs]
        for p, out in zip(procs, outputs, strict=True):
            assert p.returncode == 0, out[-3000:]
        study = optuna.load_study(study_name="shared", storage=storage)
        trials = study.get_trials(deepcopy=False)
    finally:
        server.__exit__(None, None, None)
    assert len(trials) == 4 and sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)

    client = MlflowClient()
    parents = client.search_runs(
        ["0"], "tags.`optuna.study_name` = 'shared' and attributes.run_name = 'sweep'"
    )
    assert len(parents) == 2
    numbers = []
    for parent in parents:
        mine = [t for t in trials if t.user_attrs["mlflow_parent_run_id"] == parent.info.run_id]
        numbers.append({t.number for t in mine})
        assert len(mine) == 2 and parent.data.metrics["trials_this_run"] == 2
        trained = client.search_runs(
            ["0"], f"tags.mlflow.parentRunId = '{parent.info.run_id}' and tags.`seqtrack.trial` != ''"
        )
        assert {int(r.data.tags["seqtrack.trial"]) for r in trained} == {t.number for t in mine}
    assert not numbers[0] & numbers[1] and numbers[0] | numbers[1] == {0, 1, 2, 3}
    # Each parent logs the best trial of the whole study as it stood when that process finished.
    best = max(trials, key=lambda t: t.value)
    assert any(p.data.params["best.trial"] == str(best.number) for p in parents)
