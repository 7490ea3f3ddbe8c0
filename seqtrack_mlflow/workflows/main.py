"""The main entry point: one parent run with nested select_data, train and evaluate runs.

As in an MLflow multistep project, each step hands its output on by reference: `train` and
`evaluate` take the select_data run's index (`data=<run id>`), `evaluate` takes the train run's
checkpoint by its `runs:/` URI, so every run shows its lineage. The parent holds the headline metrics
(with `first_box_auc`), the dataset summary and the evaluation's plots. Last, the train run's tracker
(its MLflow model) is registered as a new version of `model_name` in the Model Registry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from seqtrack_mlflow.config import ConfigError, RunConfig, TrackerConfig, TrainSettings
from seqtrack_mlflow.config.job_key import AUTO
from seqtrack_mlflow.datasets.selection import Selection, used_data_settings
from seqtrack_mlflow.evaluation.baselines import resolve_baselines
from seqtrack_mlflow.evaluation.runners import check_backend
from seqtrack_mlflow.model.cost import check_run_cost
from seqtrack_mlflow.model.references import checkpoint_uri
from seqtrack_mlflow.steps.evaluate import EvalResult, run_evaluate
from seqtrack_mlflow.steps.lineage import selection_from_run
from seqtrack_mlflow.steps.select_data import SelectResult, run_select_data
from seqtrack_mlflow.steps.train import TrainResult, run_train
from seqtrack_mlflow.tracking import (
    RegisteredTracker,
    RunLogger,
    git_commit,
    job_tags,
    owned_run,
    register_run_tracker,
    run_context,
)
from seqtrack_mlflow.train.distributed import pick_device
from seqtrack_mlflow.workflows.main_resume import MainRestart, plan_restart

HEADLINE_METRICS = ("auc", "precision", "norm_precision", "fps", "first_box_auc")


@dataclass(frozen=True)
class PipelineResult:
    run_id: str | None
    train: TrainResult | None  # None: a restarted job reused its FINISHED train run (main_resume)
    evaluation: EvalResult
    registered: RegisteredTracker | None = None  # None: model_name=none, or a warning said why
    data_run_id: str | None = None  # the nested select_data run


def run_pipeline(
    settings: TrainSettings,
    tracker_cfg: TrackerConfig,
    *,
    output_dir: Path = Path("outputs"),
    model_name: str = "seqtrack",
    resume: str | None = None,
    run_key: str | None = None,
) -> PipelineResult:
    """`model_name`: the Model Registry name the train run's tracker is registered under ("none": not).
    `resume`: None or `auto` (continue the job `run_key`'s unfinished parent run: `main_resume`);
    `run_key`: this job's key, tagged on the parent run."""
    RunConfig(model_name=model_name).validate()
    if resume not in (None, AUTO):
        raise ConfigError(
            f"main takes resume=auto only (got {resume!r}): continue a train run by id with "
            "-e train -P resume=<run id>"
        )
    seed = settings.train.seed
    tracker_cfg = tracker_cfg.resolved()  # an unset update interval: the benchmark's official one
    # Refuse what cannot run before any run starts (the train step prints the estimate itself).
    device = pick_device(settings.train.device)
    check_run_cost(settings.model, settings.train, device, time_step=False)  # refusals only
    tracker_cfg.validate()
    # Unset baselines: on for the demo's synthetic data; no OpenCV is refused before the training.
    tracker_cfg = resolve_baselines(tracker_cfg, settings.data.source)
    check_backend(tracker_cfg, device)  # an evaluation that cannot run is refused before the training
    restart = plan_restart(run_key) if resume == AUTO else MainRestart()
    owner = owned_run(restart.parent, wait=True) if restart.parent else contextlib.nullcontext()
    with owner, run_context("main", run_id=restart.parent) as parent, _new_job_run(parent, restart, run_key):
        env_run = os.environ.get("MLFLOW_RUN_ID")
        if restart.parent and env_run and env_run != restart.parent:
            RunLogger(env_run).set_tags({"seqtrack.continued_in": restart.parent})
        parent.set_tags({"seqtrack.git_commit": git_commit(), "seqtrack.preset": settings.preset})
        if restart.select_data:
            selected = SelectResult(
                restart.select_data, selection_from_run(restart.select_data, output_dir / restart.select_data)
            )
        else:
            selected = run_select_data(settings.data, seed, output_dir, nested=True)
        selection = selected.selection
        settings = dataclasses.replace(settings, data=used_data_settings(selection.data))
        run_values = {
            "output_dir": str(output_dir),
            "model_name": model_name,
            "resume": resume,
            "run_key": run_key,
        }
        _log_inputs(parent, settings, tracker_cfg, selection, run_values)
        what = (
            f"SeqTrack {settings.preset} on {' + '.join(selection.classes)} "
            f"(seed {seed}, {selection.label}, patch {settings.model.patch_size})"
        )
        parent.describe(f"{what}: running")
        trained: TrainResult | None = None
        if restart.train_done and restart.train and restart.checkpoint:
            # Its final metrics are on the parent already: they were logged as it finished.
            train_run, checkpoint = restart.train, checkpoint_uri(restart.train, restart.checkpoint)
        else:
            trained = run_train(
                settings,
                resume=restart.train,
                finish=restart.train is not None,  # a train run killed after its last checkpoint ends here
                data_run=selected.run_id,
                output_dir=output_dir,
                nested=True,
                tracker=tracker_cfg,
            )
            train_run, checkpoint = trained.run_id, trained.checkpoint_ref
            outcome = trained.outcome
            parent.log_metrics({"final_loss": outcome.final_loss, "final_iou": outcome.final_iou})
        evaluation = run_evaluate(
            checkpoint,
            tracker_cfg,
            data_run=selected.run_id,
            device=settings.train.device,
            output_dir=output_dir,
            nested=True,
        )
        _log_results(parent, selection, evaluation)
        m = evaluation.metrics
        parent.log_metrics(parent_metrics(m))
        parent.describe(
            f"{what}: AUC {m['auc']:.1f}, P {m['precision']:.1f}, P_norm {m['norm_precision']:.1f} "
            f"on the {tracker_cfg.split} split (first-box reference AUC {m['first_box_auc']:.1f})"
        )
        parent.set_tags(
            {
                "seqtrack.select_data_run_id": selected.run_id or "",
                "seqtrack.train_run_id": train_run or "",
                "seqtrack.evaluate_run_id": evaluation.run_id or "",
                "seqtrack.checkpoint": checkpoint,
            }
        )
        tags = {"seqtrack.main_run_id": parent.run_id or "", "auc": f"{m['auc']:.2f}"}
        registered = register_run_tracker(parent, train_run, model_name, tags)
        return PipelineResult(parent.run_id, trained, evaluation, registered, selected.run_id)


def _log_results(parent: RunLogger, selection: Selection, evaluation: EvalResult) -> None:
    """The dataset summary and the evaluation's plots on the parent too: its page shows the result."""
    for path in selection.summary_paths:
        parent.log_artifact(path, "data")
    for plot in sorted(evaluation.out_dir.glob("*.png")):
        parent.log_artifact(plot, "evaluation")


def parent_metrics(evaluated: dict[str, float]) -> dict[str, float]:
    """What the parent run shows of its evaluate run's metrics: the headline and the classical baselines'
    (`baseline.<name>.*`), so runs compare with them at the top level."""
    return {k: v for k, v in evaluated.items() if k in HEADLINE_METRICS or k.startswith("baseline.")}


@contextlib.contextmanager
def _new_job_run(parent: RunLogger, restart: MainRestart, run_key: str | None) -> Iterator[None]:
    """A new parent run of a job: tagged with its key and owned, so that a restart of the job while it
    runs is refused (a continued parent is owned already)."""
    if not (run_key and parent.run_id and not restart.parent):
        yield
        return
    parent.set_tags(job_tags(run_key, "main"))
    with owned_run(parent.run_id, settle=0.0):
        yield


def _log_inputs(
    parent: RunLogger,
    settings: TrainSettings,
    tracker_cfg: TrackerConfig,
    selection: Selection,
    run_values: dict[str, str | None],
) -> None:
    """Every setting of the pipeline on the parent run, so runs compare at the top level (`run_values`:
    the run's own settings: output_dir, model_name, resume, run_key)."""
    parent.log_params(
        {
            **settings.params(),
            **dataclasses.asdict(tracker_cfg),
            **run_values,
            "selected_classes": ",".join(selection.classes),
            "data_source": selection.source,
        }
    )
    parent.set_tags({"data.source": selection.source, "data.classes": ",".join(selection.classes)})
