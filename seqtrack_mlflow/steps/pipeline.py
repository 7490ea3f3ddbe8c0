"""The main entry point: one parent run with nested select_data, train and evaluate runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seqtrack_mlflow.config import TrackerConfig, TrainSettings
from seqtrack_mlflow.steps.evaluate import EvalResult, run_evaluate
from seqtrack_mlflow.steps.select_data import run_select_data
from seqtrack_mlflow.steps.train import TrainResult, run_train
from seqtrack_mlflow.tracking import git_commit, run_context

HEADLINE_METRICS = ("auc", "precision", "norm_precision", "fps")


@dataclass(frozen=True)
class PipelineResult:
    run_id: str | None
    train: TrainResult
    evaluation: EvalResult


def run_pipeline(
    settings: TrainSettings,
    tracker_cfg: TrackerConfig,
    *,
    split: str = "test",
    output_dir: Path = Path("outputs"),
) -> PipelineResult:
    seed = settings.train.seed
    with run_context("main") as parent:
        parent.log_params(
            {
                "seed": seed,
                "preset": settings.preset,
                "patch_size": settings.model.patch_size,
                "classes": settings.data.classes,
                "epochs": settings.train.epochs,
                "samples_per_epoch": settings.train.samples_per_epoch,
                "search_size": settings.model.search_size,
                "template_size": settings.model.template_size,
                "num_tokens": settings.model.num_tokens,
            }
        )
        parent.set_tags({"seqtrack.git_commit": git_commit(), "seqtrack.preset": settings.preset})
        with run_context("select_data", nested=True) as logger:
            selection = run_select_data(
                settings.data, seed, output_dir / (logger.run_id or "offline"), logger
            )
        parent.log_params({"selected_classes": ",".join(selection.classes), "data_source": selection.source})
        parent.set_tags({"data.source": selection.source, "data.classes": ",".join(selection.classes)})
        trained = run_train(settings, output_dir=output_dir, nested=True)
        if trained.outcome.checkpoint is None:
            raise RuntimeError("training wrote no checkpoint")
        parent.log_metrics({"final_loss": trained.outcome.final_loss, "final_iou": trained.outcome.final_iou})
        evaluation = run_evaluate(
            str(trained.outcome.checkpoint),
            tracker_cfg,
            split=split,
            device=settings.train.device,
            output_dir=output_dir,
            nested=True,
            train_run_id=trained.run_id,
        )
        parent.log_metrics({k: evaluation.metrics[k] for k in HEADLINE_METRICS})
        parent.set_tags(
            {
                "seqtrack.select_data_run_id": logger.run_id or "",
                "seqtrack.train_run_id": trained.run_id or "",
                "seqtrack.evaluate_run_id": evaluation.run_id or "",
            }
        )
        return PipelineResult(parent.run_id, trained, evaluation)
