"""Generated project files: `MLproject` from the settings declarations, `conda.yaml` from pyproject.toml.

Both are committed (MLflow and conda read them as files); tests fail when the committed copies drift
from what these functions generate, and name the command that regenerates them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seqtrack_mlflow.config import STEPS, Setting, step_settings
from seqtrack_mlflow.config.spelling import canonical

ROOT = Path(__file__).resolve().parents[1]
_MLFLOW_TYPES = {int: "int", float: "float", bool: "string", str: "string"}


def _yaml_scalar(value: Any) -> str:
    """The default in its canonical spelling (`config.spelling`), which `mlflow run` then logs as is: a
    number bare, anything else a quoted string (MLflow has no bool type: `"true"`, which click reads)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return canonical(value)
    return json.dumps(canonical(value))  # a JSON string is a valid YAML double-quoted scalar


def declared_in_mlproject(s: Setting, step: str) -> bool:
    """MLflow has no "unset": a setting whose default in `step` is None is not declared, so `mlflow run`
    logs no placeholder for it; given with -P, MLflow passes it on as `--name value` all the same."""
    return s.default_in(step) is not None or step in s.required


def mlproject_text() -> str:
    lines = [
        "# GENERATED from seqtrack_mlflow/config/ by `seqtrack-mlflow mlproject > MLproject`: edit the",
        "# settings there, not this file (tests/config/test_project_files.py fails when the two differ).",
        "#",
        "#   mlflow run . --env-manager local -P seed=8 -P source=synthetic      (whole pipeline)",
        "#   mlflow run . --env-manager local -e train -P seed=8 -P epochs=5 -P patch_size=1 \\",
        "#       -P search_size=16 -P template_size=16 -P source=synthetic",
        "#",
        "# Settings whose value depends on the preset or on an earlier run are not declared below (MLflow",
        '# cannot express "unset"); pass them with -P all the same. Every run logs the value it used for',
        "# every setting under the setting's own name.",
        "name: seqtrack-mlflow",
        "conda_env: conda.yaml",
        "",
        "entry_points:",
    ]
    for step in STEPS:
        settings = step_settings(step)
        declared = [s for s in settings if declared_in_mlproject(s, step)]
        optional = [s for s in settings if not declared_in_mlproject(s, step)]
        lines.append(f"  {step}:")
        if optional:
            lines.append("    # also accepted (unset = what the help says):")
            for s in optional:
                lines.append(f"    #   {s.name}: {s.help_in(step)} [unset: {s.unset_meaning(step)}]")
        lines.append("    parameters:")
        for s in declared:
            spec = f"type: {_MLFLOW_TYPES[s.type]}"
            default = s.default_in(step)
            if default is not None:
                spec += f", default: {_yaml_scalar(default)}"
            lines.append(f"      {s.name}: {{{spec}}}")
        args = " ".join(f"--{s.name} {{{s.name}}}" for s in declared)
        lines.append(f'    command: "python entry_points/{step}.py {args}"')
        lines.append("")
    return "\n".join(lines)


# The extras `mlflow run .` needs: the demo scores the classical baselines by default (OpenCV).
CONDA_EXTRAS = ("baselines",)


def project_dependencies(
    pyproject: Path = ROOT / "pyproject.toml", extras: tuple[str, ...] = ()
) -> list[str]:
    """The project's dependencies, and those of `extras`."""
    import tomllib  # Python 3.11+: a development command, not needed to train or evaluate

    project = tomllib.loads(pyproject.read_text())["project"]
    return [*project["dependencies"], *(d for e in extras for d in project["optional-dependencies"][e])]


def conda_env_text(pyproject: Path = ROOT / "pyproject.toml") -> str:
    lines = [
        "# GENERATED from pyproject.toml by `seqtrack-mlflow conda-env > conda.yaml`: the conda",
        "# environment for `mlflow run .` where conda exists (tests/config/test_project_files.py fails",
        "# when they differ).",
        "name: seqtrack-mlflow",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        "  - python=3.11",
        "  - pip",
        "  - pip:",
        *(f"      - {dep}" for dep in project_dependencies(pyproject, CONDA_EXTRAS)),
        "",
    ]
    return "\n".join(lines)
