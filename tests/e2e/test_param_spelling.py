"""One spelling per value: the runs `main` nests log the same params as each step run on its own with the
same settings, so MLflow's compare view ("show diff only") shows no false differences."""

from __future__ import annotations

from click.testing import CliRunner
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.cli import main
from seqtrack_mlflow.config import step_settings

# What a user types: the tiny preset at 32-px crops, one short epoch on synthetic data, 10 frames tracked.
SETTINGS = {
    "seed": "8",
    "source": "synthetic",
    "classes": "airplane,random",  # a drawn class: `classes` keeps the spec, `selected_classes` the draw
    "synthetic_sequences": "2",
    "synthetic_frames": "30",
    "search_size": "32",
    "template_size": "32",
    "epochs": "1",
    "samples_per_epoch": "20",
    "batch_size": "10",
    "log_every": "10",
    "system_metrics": "false",
    "device": "cpu",
    "max_frames": "10",
    "window_penalty": "true",
    "output_dir": "outputs",
}

# Params that name other runs, so they differ between two pipelines by construction (each is checked
# below to name the run of its own pipeline instead):
REFERENCES = {
    "data",  # the select_data run a step read its index from: main's child, or the standalone one
    "checkpoint",  # runs:/<train run id>/...: the train run of the same pipeline
    "checkpoint_uri",  # the same reference resolved: again the train run id of the same pipeline
}


def _cli(step: str, settings: dict[str, str], *extra: str) -> None:
    """Run `seqtrack-mlflow <step>` in process with the settings that step takes."""
    names = {s.name for s in step_settings(step.replace("-", "_"))}
    args = [a for k, v in settings.items() if k in names for a in (f"--{k}", v)]
    result = CliRunner().invoke(main, [step, *args, *extra], catch_exceptions=False)
    assert result.exit_code == 0, result.output[-3000:]


def _latest(client: MlflowClient, name: str, *, nested: bool) -> Run:
    runs = client.search_runs(["0"], f"tags.`mlflow.runName` = '{name}'", order_by=["start_time DESC"])
    return next(r for r in runs if ("mlflow.parentRunId" in r.data.tags) == nested)


def test_main_children_log_the_params_of_standalone_steps(mlflow_uri: str) -> None:
    client = MlflowClient()
    _cli("main", SETTINGS, "--model_name", "none")
    children = {name: _latest(client, name, nested=True) for name in ("select_data", "train", "evaluate")}
    parent = _latest(client, "main", nested=False).data.params
    for step, child in children.items():  # a setting main logs too reads the same on main and its children
        shared = set(parent) & set(child.data.params)
        assert {k: child.data.params[k] for k in shared} == {k: parent[k] for k in shared}, step

    _cli("select-data", SETTINGS)
    alone = {"select_data": _latest(client, "select_data", nested=False)}
    select_id = alone["select_data"].info.run_id
    _cli("train", SETTINGS, "--data", select_id)
    alone["train"] = _latest(client, "train", nested=False)
    train_id = alone["train"].info.run_id
    # The reference in the spelling main gives its evaluate run, naming this pipeline's train run.
    nested_ckpt = children["evaluate"].data.params["checkpoint"]
    checkpoint = nested_ckpt.replace(children["train"].info.run_id, train_id)
    assert checkpoint != nested_ckpt and checkpoint.startswith(f"runs:/{train_id}/")
    _cli("evaluate", SETTINGS, "--data", select_id, "--checkpoint", checkpoint)
    alone["evaluate"] = _latest(client, "evaluate", nested=False)

    for step, child in children.items():
        nested, standalone = child.data.params, alone[step].data.params
        assert set(nested) == set(standalone), (step, set(nested) ^ set(standalone))
        differ = {k: (nested[k], standalone[k]) for k in nested if nested[k] != standalone[k]}
        assert set(differ) <= REFERENCES, (step, differ)
        for key, value in [*nested.items(), *standalone.items()]:
            assert value not in ("True", "False"), (step, key, value)  # booleans are true/false
    # Each reference names the run of its own pipeline, in the same form.
    main_select, main_train = children["select_data"].info.run_id, children["train"].info.run_id
    for step in ("train", "evaluate"):
        assert children[step].data.params["data"] == main_select
        assert alone[step].data.params["data"] == select_id
    uri = children["evaluate"].data.params["checkpoint_uri"]
    assert uri == f"runs:/{main_train}/checkpoints/epoch_1.ckpt"
    assert alone["evaluate"].data.params["checkpoint_uri"] == uri.replace(main_train, train_id)
    for runs in (children, alone):
        params = runs["evaluate"].data.params
        assert (params["classes"], params["selected_classes"]) == ("airplane,random", "airplane,guitar")
        assert params["window_penalty"] == "true" and params["verify_frames"] == "false"


def test_a_bare_train_run_id_resolves_to_the_same_checkpoint_uri(mlflow_uri: str) -> None:
    """`checkpoint` keeps what the user gave; `checkpoint_uri` is the one resolved form."""
    client = MlflowClient()
    _cli("train", SETTINGS)
    train_id = _latest(client, "train", nested=False).info.run_id
    _cli("evaluate", SETTINGS, "--checkpoint", train_id)
    params = _latest(client, "evaluate", nested=False).data.params
    assert params["checkpoint"] == train_id
    assert params["checkpoint_uri"] == f"runs:/{train_id}/checkpoints/epoch_1.ckpt"
    # Without -P data, evaluate logs the training run's class spec, and the classes it drew.
    assert (params["classes"], params["selected_classes"]) == ("airplane,random", "airplane,guitar")
