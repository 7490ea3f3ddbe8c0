"""What the `main` parent run copies of its evaluate run's metrics."""

from seqtrack_mlflow.workflows.main import parent_metrics


def test_parent_shows_the_headline_and_the_classical_baselines() -> None:
    evaluated = {
        "auc": 30.0,
        "precision": 40.0,
        "norm_precision": 35.0,
        "fps": 12.0,
        "auc_airplane": 31.0,
        "first_box_auc": 11.0,
        "baseline.kcf.auc": 33.6,
        "baseline.kcf.precision": 41.0,
        "baseline.kcf.norm_precision": 38.0,
    }
    assert parent_metrics(evaluated) == {
        "auc": 30.0,
        "precision": 40.0,
        "norm_precision": 35.0,
        "fps": 12.0,
        "first_box_auc": 11.0,
        "baseline.kcf.auc": 33.6,
        "baseline.kcf.precision": 41.0,
        "baseline.kcf.norm_precision": 38.0,
    }
