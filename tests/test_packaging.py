"""The project files users and CI rely on agree with each other."""

from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_conda_env_mirrors_pyproject_dependencies() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
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
    assert set(project["entry_points"]) == {"main", "select_data", "train", "evaluate"}
    for name, spec in project["entry_points"].items():
        command = main.get_command(None, name.replace("_", "-"))
        cli_options = {p.name for p in command.params}
        assert set(spec["parameters"]) <= cli_options, name
        defaults = {p.name: p.default for p in command.params}
        for param, declared in spec["parameters"].items():
            assert f"--{param} {{{param}}}" in spec["command"], (name, param)
            if "default" in declared:  # `mlflow run` and `seqtrack-mlflow` must mean the same run
                assert same_value(declared["default"], defaults[param]), (name, param)
        assert (ROOT / "entry_points" / f"{name}.py").is_file()
    train_params = project["entry_points"]["train"]["parameters"]
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
        "device",
        "amp",
        "workers",
    ):
        assert required in train_params
