"""The train run's artifacts: the training curves name the data they were trained on."""

from pathlib import Path

from PIL import Image

from seqtrack_mlflow.datasets import registry
from seqtrack_mlflow.train.artifacts import curve_titles, plot_training_curves


def test_training_curves_of_synthetic_data_say_synthetic_in_every_title(tmp_path: Path) -> None:
    label = registry.for_source("synthetic").label  # what a synthetic selection's label is
    assert all("synthetic" in title for title in curve_titles(label))
    path = plot_training_curves([16, 32, 48], [4.2, 4.0, 3.9], [0.1, 0.2, 0.3], tmp_path / "c.png", label)
    with Image.open(path) as png:
        assert png.format == "PNG" and png.width > png.height
