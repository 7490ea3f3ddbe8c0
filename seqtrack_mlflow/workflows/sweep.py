"""The sweep entry point: an Optuna study whose trials are nested train + evaluate runs of one parent run.

    sweep (parent run)                      params: the fixed settings, the space; best.<setting>, ...
     ├─ select_data (nested)                once; every trial trains and evaluates on its index
     ├─ train    "trial-0-train"            the trial's settings; epoch_iou reported to the trial
     ├─ evaluate "trial-0-evaluate"         the objective: its AUC
     ├─ train    "trial-1-train"            pruned at epoch 2: KILLED, tag seqtrack.pruned=true,
     │                                      no evaluate run
     └─ ...

At the end, the best trial's tracker (its train run's MLflow model) is registered as a new version of
`model_name` in the Model Registry.

Pruning: after each epoch the trainer's `on_epoch_end` reports `epoch_iou` to the trial (step = epoch);
when Optuna's MedianPruner says so, the callback raises `TrialStopped`, which ends training at once. It
is an `Interrupted` (a stop on purpose, not a failure), so the train run ends KILLED like a run stopped
by a signal; the sweep then tags it `seqtrack.pruned=true`, `seqtrack.pruned_at_epoch=<epoch>` and
`seqtrack.interrupted=pruned` (no signal came), tells Optuna the trial was PRUNED and skips its evaluate.

Sharing: with `storage` (any SQLAlchemy URL Optuna accepts) every process that names the same
`study_name` loads the same study and runs `trials` more of it; Optuna gives each trial its own number.

Seeding (`SweepSampler`): trial N's parameters are drawn from (seed, N) while the study has fewer finished
trials than TPE's startup count (10): the same seed gives the same parameters to trial N on whichever
machine runs it, and processes sharing a study never repeat each other's draws. After that, TPE proposes
values from the results so far; those depend on the results and, with several processes, on the order
in which trials finish, so they are reproducible only for one process with deterministic training.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from seqtrack_mlflow.config import RunConfig, SweepConfig, TrackerConfig, TrainSettings
from seqtrack_mlflow.datasets.selection import Selection, used_data_settings
from seqtrack_mlflow.evaluation.baselines import resolve_baselines
from seqtrack_mlflow.messages import first_line
from seqtrack_mlflow.steps.evaluate import EvalResult, run_evaluate
from seqtrack_mlflow.steps.select_data import run_select_data
from seqtrack_mlflow.steps.train import run_train
from seqtrack_mlflow.sweep.space import Space, apply_values, resolve_space, space_json, suggest
from seqtrack_mlflow.sweep.study import PruneOnEpochIou, masked_storage, open_study, study_plots
from seqtrack_mlflow.tracking import (
    RegisteredTracker,
    RunLogger,
    git_commit,
    register_run_tracker,
    run_context,
)
from seqtrack_mlflow.train.interrupt import Interrupted

OBJECTIVE = "auc"
TRIAL_METRICS = ("auc", "precision", "norm_precision")
PRUNED_TAG = "seqtrack.pruned"
PLOTS_DIR = "sweep"


@dataclass(frozen=True)
class TrialResult:
    number: int
    state: str  # COMPLETE, PRUNED or FAIL
    params: dict[str, Any]
    value: float | None
    train_run_id: str | None
    evaluate_run_id: str | None


@dataclass(frozen=True)
class SweepResult:
    run_id: str | None
    study_name: str
    trials: list[TrialResult]  # the ones this process ran
    best_number: int | None
    best_params: dict[str, Any]
    best_value: float | None
    registered: RegisteredTracker | None = None  # the best trial's tracker (or a warning said why)


def run_sweep(
    settings: TrainSettings,
    tracker_cfg: TrackerConfig,
    sweep_cfg: SweepConfig,
    *,
    given: set[str] = frozenset(),
    output_dir: Path = Path("outputs"),
    model_name: str = "seqtrack",
) -> SweepResult:
    """`given`: the names of the settings given explicitly; they stay fixed (out of the default space).
    `model_name`: the Model Registry name the best trial's tracker is registered under ("none": not)."""
    sweep_cfg.validate()
    RunConfig(model_name=model_name).validate()
    tracker_cfg.validate()
    tracker_cfg = resolve_baselines(tracker_cfg, settings.data.source)  # no OpenCV: refused before trials
    space = resolve_space(sweep_cfg.space, settings, tracker_cfg, set(given))
    study = open_study(sweep_cfg, settings.train.seed)
    seed = settings.train.seed
    with run_context("sweep") as parent:
        parent.set_tags(
            {
                "seqtrack.git_commit": git_commit(),
                "seqtrack.preset": settings.preset,
                "optuna.study_name": sweep_cfg.study_name,
                "optuna.storage": masked_storage(sweep_cfg.storage),
            }
        )
        selected = run_select_data(settings.data, seed, output_dir, nested=True)
        selection = selected.selection
        settings = dataclasses.replace(settings, data=used_data_settings(selection.data))
        _log_inputs(parent, settings, tracker_cfg, sweep_cfg, space, selection, output_dir)
        parent.log_params({"model_name": model_name})
        parent.log_dict(space_json(space), f"{PLOTS_DIR}/space.json")
        what = (
            f"Sweep of SeqTrack {settings.preset} on {' + '.join(selection.classes)} (study "
            f"{sweep_cfg.study_name}, seed {seed}) over {', '.join(space)}"
        )
        parent.describe(f"{what}: running")
        context = _Context(
            parent, study, space, settings, tracker_cfg, selected.run_id, output_dir, model_name
        )
        results = [_run_trial(context) for _ in range(sweep_cfg.trials)]
        return _summarise(context, results, what, output_dir / (parent.run_id or "offline"))


def _log_inputs(
    parent: RunLogger,
    settings: TrainSettings,
    tracker_cfg: TrackerConfig,
    sweep_cfg: SweepConfig,
    space: Space,
    selection: Selection,
    output_dir: Path,
) -> None:
    """The study's fixed settings (every setting not searched), its own settings and the space."""
    fixed = {
        k: v for k, v in {**settings.params(), **dataclasses.asdict(tracker_cfg)}.items() if k not in space
    }
    parent.log_params(
        {
            **fixed,
            **dataclasses.asdict(sweep_cfg),
            "storage": masked_storage(sweep_cfg.storage),
            "space": json.dumps(space_json(space), sort_keys=True),
            "output_dir": str(output_dir),
            "selected_classes": ",".join(selection.classes),
            "data_source": selection.source,
        }
    )


@dataclass
class _Context:
    parent: RunLogger
    study: optuna.Study
    space: Space
    settings: TrainSettings
    tracker: TrackerConfig
    data_run: str | None
    output_dir: Path
    model_name: str


def _run_trial(c: _Context) -> TrialResult:
    trial = c.study.ask()
    n = trial.number
    values = suggest(trial, c.space)
    trial.set_user_attr("mlflow_parent_run_id", c.parent.run_id or "")
    print(f"sweep: trial {n}: {', '.join(f'{k}={_short(v)}' for k, v in values.items())}", flush=True)
    tags = {
        "seqtrack.sweep_run_id": c.parent.run_id or "",
        "seqtrack.trial": n,
        "optuna.study_name": c.study.study_name,
    }
    runs: dict[str, str | None] = {"train": None}
    pruning = PruneOnEpochIou(trial)
    try:
        evaluation = _train_and_evaluate(c, trial, values, tags, runs, pruning)
    except Interrupted:
        if pruning.pruned_at is None:  # a real signal: the trial did not finish, and neither does the sweep
            c.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        return _pruned(c, trial, values, runs["train"], pruning)
    except Exception as exc:  # noqa: BLE001 - one trial's failure (a setting that does not fit...) is the trial's
        c.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        print(f"sweep: trial {n} failed: {first_line(exc)}", flush=True)
        if runs["train"]:
            RunLogger(runs["train"]).set_tags({"seqtrack.trial_error": first_line(exc, limit=5000)})
        return TrialResult(n, "FAIL", values, None, runs["train"], None)
    except BaseException:
        c.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    return _completed(c, trial, values, tags, runs["train"], evaluation)


def _train_and_evaluate(
    c: _Context,
    trial: optuna.Trial,
    values: dict[str, Any],
    tags: dict[str, Any],
    runs: dict[str, str | None],
    pruning: PruneOnEpochIou,
) -> EvalResult:
    """The trial's nested train run (pruned through `pruning`) and its evaluate run; `runs["train"]`
    names the train run as soon as it exists, so a failure can be tagged on it."""

    def on_train_run(logger: RunLogger) -> None:
        runs["train"] = logger.run_id
        trial.set_user_attr("train_run_id", logger.run_id or "")
        logger.set_tags({**tags, "mlflow.runName": f"trial-{trial.number}-train"})
        logger.log_params(values)  # the trial's values the train run does not log itself (tracker ones)

    settings, tracker = apply_values(values, c.settings, c.tracker)
    trained = run_train(
        settings,
        data_run=c.data_run,
        output_dir=c.output_dir,
        nested=True,
        callbacks=pruning,
        on_run=on_train_run,
        tracker=tracker,
    )
    return run_evaluate(
        trained.checkpoint_ref,
        tracker,
        data_run=c.data_run,
        device=settings.train.device,
        output_dir=c.output_dir,
        nested=True,
    )


def _completed(
    c: _Context,
    trial: optuna.Trial,
    values: dict[str, Any],
    tags: dict[str, Any],
    train_run: str | None,
    evaluation: EvalResult,
) -> TrialResult:
    """Tell the study the trial's AUC; name and tag its evaluate run so the UI shows one row per trial."""
    n = trial.number
    evaluated = RunLogger(evaluation.run_id) if evaluation.run_id else RunLogger(None)
    evaluated.set_tags({**tags, "mlflow.runName": f"trial-{n}-evaluate"})
    evaluated.log_params(values)  # one row per trial in the UI: the trial's values beside its AUC
    for key in TRIAL_METRICS:
        trial.set_user_attr(key, float(evaluation.metrics[key]))
    trial.set_user_attr("evaluate_run_id", evaluation.run_id or "")
    value = float(evaluation.metrics[OBJECTIVE])
    c.study.tell(trial, value)
    c.parent.log_metrics({"trial_auc": value}, step=n)
    print(f"sweep: trial {n}: AUC {value:.2f}", flush=True)
    return TrialResult(n, "COMPLETE", values, value, train_run, evaluation.run_id)


def _pruned(
    c: _Context, trial: optuna.Trial, values: dict[str, Any], train_run: str | None, pruning: PruneOnEpochIou
) -> TrialResult:
    c.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    epoch, iou = pruning.pruned_at, pruning.pruned_iou
    if train_run:
        logger = RunLogger(train_run)
        # run_context tagged the (KILLED) run with the signal of an `Interrupted`: no signal came.
        logger.set_tags(
            {PRUNED_TAG: "true", "seqtrack.pruned_at_epoch": epoch, "seqtrack.interrupted": "pruned"}
        )
        logger.describe(
            f"Trial {trial.number} of sweep study {c.study.study_name}: pruned after epoch {epoch} (epoch "
            f"IoU {iou:.3f} below the median of the finished trials at that epoch); not evaluated"
        )
    print(f"sweep: trial {trial.number}: pruned after epoch {epoch} (epoch IoU {iou:.3f})", flush=True)
    return TrialResult(trial.number, "PRUNED", values, None, train_run, None)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _summarise(c: _Context, results: list[TrialResult], what: str, out_dir: Path) -> SweepResult:
    """Log the study's best trial (across every process of a shared study), the counts and the plots."""
    study, parent = c.study, c.parent
    trials = study.get_trials(deepcopy=False)
    states = optuna.trial.TrialState
    counts = {
        f"trials_{name}": sum(t.state == state for t in trials)
        for name, state in (("complete", states.COMPLETE), ("pruned", states.PRUNED), ("failed", states.FAIL))
    }
    parent.log_metrics({**counts, "trials_this_run": len(results)})
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in study_plots(study, out_dir):
        parent.log_artifact(path, PLOTS_DIR)
    table = out_dir / "trials.csv"
    study.trials_dataframe().to_csv(table, index=False)
    parent.log_artifact(table, PLOTS_DIR)
    complete = [t for t in trials if t.state == states.COMPLETE]
    if not complete:
        parent.describe(f"{what}: no trial completed ({counts})")
        raise RuntimeError(
            f"no trial of study {study.study_name} completed ({counts['trials_pruned']} pruned, "
            f"{counts['trials_failed']} failed): see the trials' runs under sweep run {parent.run_id}"
        )
    best = study.best_trial
    parent.log_params({"best.trial": best.number, **{f"best.{k}": v for k, v in best.params.items()}})
    parent.log_metrics(
        {f"best_{k}": float(best.user_attrs[k]) for k in TRIAL_METRICS if k in best.user_attrs}
        | {"best_trial": best.number}
    )
    parent.set_tags(
        {
            "seqtrack.best_trial": best.number,
            "seqtrack.best_train_run_id": best.user_attrs.get("train_run_id", ""),
            "seqtrack.best_evaluate_run_id": best.user_attrs.get("evaluate_run_id", ""),
        }
    )
    registered = register_run_tracker(
        parent,
        best.user_attrs.get("train_run_id"),
        c.model_name,
        {
            "seqtrack.sweep_run_id": parent.run_id or "",
            "seqtrack.trial": str(best.number),
            "auc": f"{best.value:.2f}",
        },
    )
    shown = ", ".join(f"{k}={_short(v)}" for k, v in best.params.items())
    parent.describe(
        f"{what}: best trial {best.number}, AUC {best.value:.1f} ({shown}); {counts['trials_complete']} "
        f"complete, {counts['trials_pruned']} pruned, {counts['trials_failed']} failed"
    )
    return SweepResult(
        parent.run_id, study.study_name, results, best.number, dict(best.params), best.value, registered
    )


__all__ = ["SweepResult", "TrialResult", "run_sweep"]
