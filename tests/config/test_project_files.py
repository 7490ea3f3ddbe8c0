"""The generated project files (MLproject, conda.yaml) match their sources, and MLproject, the CLI and
the settings declarations agree with each other."""

import tomllib
import yaml
from factories import ROOT

from seqtrack_mlflow.config import STEPS, step_settings
from seqtrack_mlflow.project_files import conda_env_text, mlproject_text


def test_committed_mlproject_is_the_generated_one() -> None:
    assert (ROOT / "MLproject").read_text() == mlproject_text(), (
        "MLproject differs from the settings in seqtrack_mlflow/config/: "
        "run `seqtrack-mlflow mlproject > MLproject`"
    )


def test_committed_conda_env_is_the_generated_one() -> None:
    assert (ROOT / "conda.yaml").read_text() == conda_env_text(), (
        "conda.yaml differs from pyproject.toml: run `seqtrack-mlflow conda-env > conda.yaml`"
    )


def test_conda_env_mirrors_pyproject_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # The demo's default classical baselines need OpenCV: `mlflow run .` installs the baselines extra.
    deps = project["dependencies"] + project["optional-dependencies"]["baselines"]
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pip_lists = [d["pip"] for d in conda["dependencies"] if isinstance(d, dict)]
    assert len(pip_lists) == 1 and sorted(pip_lists[0]) == sorted(deps)
    assert any(str(d).startswith("mlflow>=3.17,<4") for d in deps)


def same_value(declared: object, cli_default: object) -> bool:
    if isinstance(cli_default, (int, float)) and not isinstance(cli_default, bool):
        return float(declared) == float(cli_default)
    return str(declared).lower() == str(cli_default).lower()


def test_mlproject_entry_points_match_cli_options() -> None:
    from seqtrack_mlflow.cli import main

    project = yaml.safe_load((ROOT / "MLproject").read_text())
    assert project["conda_env"] == "conda.yaml"
    assert set(project["entry_points"]) == set(STEPS)
    for name, spec in project["entry_points"].items():
        command = main.get_command(None, name.replace("_", "-"))
        cli_options = {p.name for p in command.params}
        assert set(spec["parameters"]) <= cli_options, name
        assert cli_options == {s.name for s in step_settings(name)}, name
        defaults = {p.name: p.default for p in command.params}
        for param, declared in spec["parameters"].items():
            assert f"--{param} {{{param}}}" in spec["command"], (name, param)
            if "default" in declared:  # `mlflow run` and `seqtrack-mlflow` must mean the same run
                assert same_value(declared["default"], defaults[param]), (name, param)
        # Undeclared options are exactly the ones whose unset value is the preset's or an earlier run's.
        for p in command.params:
            if p.name not in spec["parameters"]:
                assert p.default is None, (name, p.name)
        assert (ROOT / "entry_points" / f"{name}.py").is_file()
    train_options = {p.name for p in main.get_command(None, "train").params}
    for required in (
        "seed",
        "epochs",
        "patch_size",
        "preset",
        "batch_size",
        "lr",
        "samples_per_epoch",
        "log_every",
        "source",
        "lasot_root",
        "classes",
        "pretrained",
        "resume",
        "data",
        "device",
        "amp",
        "workers",
    ):
        assert required in train_options


def test_preset_dependent_settings_are_unset_in_the_cli() -> None:
    """A preset may set any model/training setting: the CLI must not override it with a default."""
    from seqtrack_mlflow.cli import main

    train = {p.name: p for p in main.get_command(None, "train").params}
    for name in ("patch_size", "epochs", "log_every", "lr", "batch_size", "device", "pretrained"):
        assert train[name].default is None, name
