"""The sweep's study: bad sweep settings refused in one line, seeding (trial N's draw depends on the seed
and N only), the pruning callback and the study plots. Whole sweeps are in tests/e2e/test_sweep.py."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from factories import SWEEP_TRACKER, sweep_settings

from seqtrack_mlflow.config import ConfigError, SweepConfig
from seqtrack_mlflow.sweep.space import default_space, suggest
from seqtrack_mlflow.sweep.study import (
    PruneOnEpochIou,
    SweepSampler,
    TrialStopped,
    masked_storage,
    study_plots,
)
from seqtrack_mlflow.workflows.sweep import run_sweep

optuna.logging.set_verbosity(optuna.logging.WARNING)


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


# -- plots ----------------------------------------------------------------------------------------


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
