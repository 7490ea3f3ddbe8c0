"""The sweep: its search space, seeding and pruning (fast), a whole sweep in process whose runs compare
cleanly (slow), and two sweep processes sharing one PostgreSQL-backed study (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from factories import SWEEP_DATA, SWEEP_TRACKER, sweep_settings
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.config import ConfigError, SweepConfig, build_settings
from seqtrack_mlflow.sweep.space import default_space, resolve_space, suggest
from seqtrack_mlflow.sweep.study import (
    PruneOnEpochIou,
    SweepSampler,
    TrialStopped,
    masked_storage,
    study_plots,
)
from seqtrack_mlflow.workflows.sweep import run_sweep

optuna.logging.set_verbosity(optuna.logging.WARNING)

# -- the space ------------------------------------------------------------------------------------


def test_default_space_fits_the_preset() -> None:
    space = default_space(sweep_settings(), SWEEP_TRACKER)
    assert list(space) == ["lr", "batch_size", "patch_size", "update_threshold"]
    assert space["lr"].log and (space["lr"].low, space["lr"].high) == pytest.approx((5e-5, 5e-3))
    assert space["batch_size"].choices == (4, 8, 16)
    assert space["patch_size"].choices == (8, 16)  # divide 32, at least a 2x2 grid
    assert (space["update_threshold"].low, space["update_threshold"].high) == (0.3, 0.9)
    # At the preset's 128-px crops: 8, 16 and 32; a setting given explicitly is not swept.
    tiny = build_settings("tiny", {}, {}, SWEEP_DATA)
    assert default_space(tiny, SWEEP_TRACKER)["patch_size"].choices == (8, 16, 32)
    assert "lr" not in default_space(tiny, SWEEP_TRACKER, fixed={"lr"})


def test_a_given_space_from_text_or_file(tmp_path: Path) -> None:
    settings = sweep_settings()
    space = resolve_space(
        '{"lr": {"low": 1e-4, "high": 1e-2, "log": true}, "patch_size": [8, 16]}',
        settings,
        SWEEP_TRACKER,
        set(),
    )
    assert list(space) == ["lr", "patch_size"] and space["patch_size"].kind == "categorical"
    path = tmp_path / "space.json"
    path.write_text(
        json.dumps({"epochs": {"low": 1, "high": 3}, "update_threshold": {"low": 0.4, "high": 0.8}})
    )
    space = resolve_space(str(path), settings, SWEEP_TRACKER, set())
    assert space["epochs"].kind == "int" and space["update_threshold"].kind == "float"


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ('{"lr": ', "is not valid JSON"),
        ("no/such/space.json", "neither JSON text nor an existing file"),
        ("[]", "non-empty JSON object"),
        ('{"classes": ["a"]}', "'classes' is not a setting a sweep may vary"),
        ('{"patch_size": [7, 8]}', "patch_size 7 does not divide template_size 32"),
        ('{"lr": {"low": 1e-2, "high": 1e-4}}', "needs low < high"),
        ('{"lr": {"low": 0, "high": 1e-2, "log": true}}', "log-uniform: it needs low > 0"),
        ('{"epochs": {"low": 2.5, "high": 8}}', "low, high and step must be ints"),
        ('{"lr": {"low": 1e-4}}', "needs both low and high"),
        ('{"lr": {"min": 1e-4, "max": 1}}', "unknown keys"),
        ('{"lr": [1e-4, -1.0]}', "lr=-1.0 is invalid"),
        ('{"batch_size": [8, 16]}', "batch_size is both given"),
    ],
)
def test_a_bad_space_is_one_line(space: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        resolve_space(space, sweep_settings(), SWEEP_TRACKER, {"batch_size"})
    assert "\n" not in str(err.value)


def test_bad_sweep_settings_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="trials=0 is invalid"):
        run_sweep(sweep_settings(), SWEEP_TRACKER, SweepConfig(trials=0), output_dir=tmp_path)
    with pytest.raises(ConfigError, match="not an SQLAlchemy URL"):
        run_sweep(sweep_settings(), SWEEP_TRACKER, SweepConfig(storage="not a url"), output_dir=tmp_path)
    assert masked_storage("postgresql://u:secret@db:5432/s") == "postgresql://u:***@db:5432/s"


# -- seeding --------------------------------------------------------------------------------------


def drawn(seed: int, trials: int = 4, storage: str | None = None, study_name: str = "s") -> list[dict]:
    space = default_space(sweep_settings(), SWEEP_TRACKER)
    study = optuna.create_study(
        direction="maximize",
        sampler=SweepSampler(seed),
        storage=storage,
        study_name=study_name,
        load_if_exists=True,
    )
    out = []
    for i in range(trials):
        trial = study.ask()
        out.append({"number": trial.number, **suggest(trial, space)})
        study.tell(trial, float(i))
    return out


def test_the_same_seed_gives_the_same_trial_parameters(tmp_path: Path) -> None:
    assert drawn(8) == drawn(8)
    assert drawn(8) != drawn(9)
    # Trial N's draw depends on (seed, N), not on the process: two processes sharing a study (here one
    # after the other on one SQLite storage) give trials 0-3 exactly the values one process gives them.
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    shared = drawn(8, 2, storage) + drawn(8, 2, storage)
    assert [t["number"] for t in shared] == [0, 1, 2, 3]
    assert shared == drawn(8)


# -- pruning --------------------------------------------------------------------------------------


def test_the_pruning_callback_stops_a_trial_below_the_median() -> None:
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=1)
    )
    good = study.ask()
    callback = PruneOnEpochIou(good)
    for epoch, iou in enumerate([0.2, 0.4, 0.6], start=1):
        callback.on_epoch_end(epoch, {"epoch_iou": iou, "epoch_loss": 1.0}, epoch * 40)
    study.tell(good, 50.0)
    assert callback.pruned_at is None

    bad = study.ask()
    callback = PruneOnEpochIou(bad)
    callback.on_epoch_end(1, {"epoch_iou": 0.25}, 40)  # above the median at epoch 1
    with pytest.raises(TrialStopped, match="pruned after epoch 2"):
        callback.on_epoch_end(2, {"epoch_iou": 0.1}, 80)  # its best so far (0.25) < 0.4
    assert callback.pruned_at == 2

    diverged = study.ask()
    callback = PruneOnEpochIou(diverged)
    with pytest.raises(TrialStopped):  # a NaN IoU (diverged training) is pruned at the first chance
        callback.on_epoch_end(1, {"epoch_iou": float("nan")}, 40)


# -- whole sweeps ---------------------------------------------------------------------------------


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


@pytest.mark.slow
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


def test_plots_without_importances_below_two_complete_trials(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    trial.report(0.1, 1)
    study.tell(trial, 20.0)
    names = {p.name for p in study_plots(study, tmp_path)}
    assert names == {"optimization_history.png", "intermediate_values.png"}
    for value in (30.0, 25.0):
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        study.tell(trial, value)
    names = {p.name for p in study_plots(study, tmp_path)}
    assert names == {"optimization_history.png", "intermediate_values.png", "param_importances.png"}


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


@pytest.mark.slow
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
