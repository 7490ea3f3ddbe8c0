"""The Optuna side of a sweep: the seeded sampler, opening a (shared) study, pruning on the epoch IoU,
and the study's plots. No MLflow: the sweep step logs what these produce.

Seeding (`SweepSampler`): trial N's parameters are drawn from (seed, N) while the study has fewer finished
trials than TPE's startup count (10): the same seed gives the same parameters to trial N on whichever
machine runs it, and processes sharing a study never repeat each other's draws. After that, TPE proposes
values from the results so far.
"""

from __future__ import annotations

import hashlib
import signal
import warnings
from pathlib import Path
from typing import Any

import optuna

from seqtrack_mlflow.config import ConfigError, SweepConfig
from seqtrack_mlflow.messages import first_line
from seqtrack_mlflow.train.callbacks import TrainerCallbacks
from seqtrack_mlflow.train.interrupt import Interrupted

TPE_STARTUP_TRIALS = 10  # Optuna's default: random draws before TPE models the results


class SweepSampler(optuna.samplers.TPESampler):
    """TPE whose startup draws depend on (seed, trial number, setting) only, not on the process's
    history: see the module's "Seeding"."""

    def __init__(self, seed: int, n_startup_trials: int = TPE_STARTUP_TRIALS):
        super().__init__(seed=seed, n_startup_trials=n_startup_trials)
        self.sweep_seed, self.startup_trials = seed, n_startup_trials

    def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        if len(study.get_trials(deepcopy=False, states=states)) < self.startup_trials:
            key = f"{self.sweep_seed}:{trial.number}:{param_name}".encode()
            draw_seed = int.from_bytes(hashlib.sha256(key).digest()[:4], "little")
            return optuna.samplers.RandomSampler(seed=draw_seed).sample_independent(
                study, trial, param_name, param_distribution
            )
        return super().sample_independent(study, trial, param_name, param_distribution)


def masked_storage(url: str | None) -> str:
    """The storage URL with its password hidden (it is logged and printed)."""
    if not url:
        return "in-memory"
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        raise ConfigError(
            f"storage={url!r} is not an SQLAlchemy URL: use e.g. sqlite:///sweep.db or "
            "postgresql://user:password@host:5432/db"
        ) from None


def open_study(cfg: SweepConfig, seed: int) -> optuna.Study:
    """Create the study, or load it from a shared storage (`load_if_exists`)."""
    shown = masked_storage(cfg.storage)
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=cfg.prune_startup_trials, n_warmup_steps=cfg.prune_warmup_epochs + 1
    )
    try:
        return optuna.create_study(
            storage=cfg.storage or None,
            study_name=cfg.study_name,
            direction="maximize",
            sampler=SweepSampler(seed),
            pruner=pruner,
            load_if_exists=True,
        )
    except ImportError as exc:
        raise ConfigError(
            f"storage={shown}: the database driver is missing ({first_line(exc)}): install it, e.g. "
            "pip install psycopg2-binary for postgresql://"
        ) from None
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy/Optuna errors of a bad URL, database or study
        raise ConfigError(
            f"storage={shown}, study_name={cfg.study_name}: {first_line(exc)}: check the URL, that the "
            "database exists and answers, and that an existing study of that name maximises AUC"
        ) from None


class TrialStopped(Interrupted):
    """Raised by `PruneOnEpochIou` to end a pruned trial's training at once. An `Interrupted` (a
    BaseException), so nothing in the training step takes it for an error: the run ends KILLED."""


class PruneOnEpochIou(TrainerCallbacks):
    """Reports each epoch's training IoU to the trial and stops training when the pruner says so."""

    def __init__(self, trial: optuna.Trial):
        self.trial = trial
        self.pruned_at: int | None = None
        self.pruned_iou = float("nan")

    def on_epoch_end(self, epoch: int, metrics: dict[str, float], step: int) -> None:
        iou = float(metrics["epoch_iou"])
        self.trial.report(iou, epoch)
        if self.trial.should_prune():
            self.pruned_at, self.pruned_iou = epoch, iou
            raise TrialStopped(
                signal.SIGTERM,
                f"trial {self.trial.number} pruned after epoch {epoch}: epoch IoU {iou:.3f} below the median",
            )


def study_plots(study: optuna.Study, out_dir: Path) -> list[Path]:
    """Optuna's optimisation history, parameter importances (2+ complete trials) and per-epoch IoUs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    plots = {
        "optimization_history.png": ovm.plot_optimization_history,
        "intermediate_values.png": ovm.plot_intermediate_values,
    }
    if len(complete) >= 2:
        plots["param_importances.png"] = ovm.plot_param_importances
    else:
        print(f"sweep: no parameter importances: {len(complete)} complete trial(s), they need 2 or more")
    paths = []
    for name, plot in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning for its matplotlib plots
            try:
                ax = plot(study)
            except (ValueError, RuntimeError) as exc:  # e.g. importances of a single distinct value
                print(f"sweep: no {name}: {first_line(exc)}")
                continue
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        fig.tight_layout()
        path = out_dir / name
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
