"""Issue 20, case 7: `sync` on a crafted `outputs/<run_id>/` folder, against a real SQLite MLflow store.
Only files inside the run's folder are uploaded (resolved: no `..`, no symlink out, no special file);
every record not in the form the package writes is refused with one line naming the file and line, and
nothing is uploaded; the store is the user's (MLFLOW_TRACKING_URI or --tracking-uri), never the folder's."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from factories import SECRET, artifact, artifacts, outbox
from mlflow.tracking import MlflowClient

from seqtrack_mlflow.cli import main
from seqtrack_mlflow.tracking import Health, RunLogger, TrackingError, sync_run_folder
from seqtrack_mlflow.tracking import outbox as outbox_module
from seqtrack_mlflow.tracking.outbox import PENDING_FILES, PENDING_MANIFEST, PENDING_METRICS, PENDING_OPS
from seqtrack_mlflow.tracking.outbox_check import OutboxError


def pending(folder: Path) -> dict[str, str]:
    return {name: (folder / name).read_text() for name in (PENDING_MANIFEST, PENDING_METRICS, PENDING_OPS)}


def assert_refused(folder: Path, run_id: str, line: int | None, *needles: str) -> None:
    """sync refuses in one line naming the file (and line), sends nothing, and keeps the outbox."""
    before = pending(folder)
    with pytest.raises(OutboxError) as err:
        sync_run_folder(folder)
    message = str(err.value)
    assert "\n" not in message and "nothing was uploaded" in message, message
    where = f"{folder / PENDING_OPS}, line {line}:" if line is not None else f"{folder / PENDING_MANIFEST}:"
    assert message.startswith(where), message
    for needle in needles:
        assert needle in message, message
    assert artifacts(run_id) == set()
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "RUNNING" and "loss" not in run.data.metrics and "x" not in run.data.tags
    assert pending(folder) == before


def test_etc_passwd_and_a_folder_elsewhere_are_never_uploaded(tmp_path: Path, mlflow_uri: str) -> None:
    for path in ("/etc/passwd", str(tmp_path / "elsewhere" / "secret.txt")):
        run_id, folder = outbox(tmp_path, [{"op": "tags", "tags": {"x": "1"}}, artifact(path)])
        assert_refused(folder, run_id, 2, f"the path {path!r} lies outside the run folder")
        shutil.rmtree(folder)
    run_id, folder = outbox(
        tmp_path, [{"op": "artifacts", "path": str(tmp_path / "elsewhere"), "artifact_path": "x"}]
    )
    assert_refused(folder, run_id, 1, "lies outside the run folder")


@pytest.mark.parametrize(
    "path",
    ["../../elsewhere/secret.txt", "checkpoints/../../../elsewhere/secret.txt", "", "checkpoints/\x00"],
)
def test_traversal_is_refused(tmp_path: Path, mlflow_uri: str, path: str) -> None:
    run_id, folder = outbox(tmp_path, [artifact("training_log.txt"), artifact(path)])
    assert_refused(folder, run_id, 2, "is refused (empty, or with ..)")


def test_symlinks_out_and_special_files_are_refused(tmp_path: Path, mlflow_uri: str) -> None:
    run_id, folder = outbox(tmp_path, [artifact("leak.txt")])
    (folder / "leak.txt").symlink_to("/etc/passwd")
    assert_refused(folder, run_id, 1, "'leak.txt' lies outside the run folder", "through a symlink")

    run_id, folder = outbox(tmp_path, [artifact("checkpoints/epoch_1.ckpt")])
    shutil.rmtree(folder / "checkpoints")
    (folder / "checkpoints").symlink_to(tmp_path / "elsewhere")  # a folder on the way
    (tmp_path / "elsewhere" / "epoch_1.ckpt").write_text(SECRET)
    assert_refused(folder, run_id, 1, "lies outside the run folder")

    run_id, folder = outbox(tmp_path, [{"op": "artifacts", "path": "index", "artifact_path": "index"}])
    (folder / "index").mkdir()
    (folder / "index" / "part.arrow").write_text("rows")
    (folder / "index" / "leak").symlink_to(tmp_path / "elsewhere" / "secret.txt")
    assert_refused(folder, run_id, 1, "'leak' in the folder 'index' leads outside the run folder")
    (folder / "index" / "leak").unlink()
    (folder / "index" / "sub").symlink_to(folder / "checkpoints")  # inside, but its content is not checked
    assert_refused(folder, run_id, 1, "holds a symlinked folder 'sub'")
    (folder / "index" / "sub").unlink()
    os.mkfifo(folder / "index" / "pipe")  # reading it would hang the upload
    assert_refused(folder, run_id, 1, "'pipe' in the folder 'index' is not a regular file")

    run_id, folder = outbox(tmp_path, [artifact("pipe")])
    os.mkfifo(folder / "pipe")
    assert_refused(
        folder, run_id, 1, "the file 'pipe' does not exist in the run folder, or is not a regular file"
    )


@pytest.mark.parametrize(
    ("record", "needle"),
    [
        ({"op": "shell", "cmd": "rm -rf ~"}, "unknown op 'shell'"),
        ('{"op": "tags", "tags": {"x": "1"', "not a JSON record"),
        pytest.param("[" * 100_000, "not a JSON record", id="deep-json"),
        ('"just a string"', "unknown op 'just a string'"),
        ({"op": "artifact", "artifact_path": None}, "the artifact op has no 'path'"),
        ({"op": "artifact", "path": ["a"], "artifact_path": None}, "the artifact op's 'path' is not a str"),
        ({"op": "params", "params": {"lr": 1}}, "params that are not text"),
        (
            {"op": "dict", "values": {}, "artifact_file": "../../../../tmp/x.json"},
            "leaves the run's artifacts",
        ),
        (artifact("training_log.txt", "/abs"), "the artifact destination '/abs' leaves the run's artifacts"),
        (artifact("training_log.txt", "a/../../b"), "leaves the run's artifacts"),
        (artifact("missing.ckpt"), "the file 'missing.ckpt' does not exist in the run folder"),
        ({"op": "model", "path": "/etc/passwd", "config": {}}, "the path '/etc/passwd' lies outside the run"),
        ({"op": "model", "path": "checkpoints/epoch_1.ckpt"}, "the model op has no 'config'"),
        (
            {"op": "model", "path": "checkpoints/epoch_1.ckpt", "config": {"update_interval": [1]}},
            "the model op's config is not settings: text keys, plain values only",
        ),
    ],
)
def test_a_record_not_ours_is_one_line_naming_its_line(
    tmp_path: Path, mlflow_uri: str, record: Any, needle: str
) -> None:
    run_id, folder = outbox(
        tmp_path, [{"op": "tags", "tags": {"x": "1"}}, artifact("training_log.txt"), record]
    )
    assert_refused(folder, run_id, 3, needle)


@pytest.mark.parametrize(
    ("manifest", "needle"),
    [
        ({"status": "RUNNING"}, "status 'RUNNING' is not one of FINISHED, FAILED, KILLED"),
        ({"run_id": "../../x"}, "run_id '../../x' is not an MLflow run id"),
        ({"end_time": "soon"}, "end_time missing or not a int"),
        ({"dropped_metric_points": -3}, "dropped_metric_points is not a count"),
    ],
)
def test_a_bad_manifest_is_one_line(tmp_path: Path, mlflow_uri: str, manifest: dict, needle: str) -> None:
    run_id, folder = outbox(tmp_path, [artifact("training_log.txt")], manifest=manifest)
    assert_refused(folder, run_id, None, needle)


def test_a_bad_metric_line_is_one_line(tmp_path: Path, mlflow_uri: str) -> None:
    run_id, folder = outbox(tmp_path, [artifact("training_log.txt")])
    (folder / PENDING_METRICS).write_text(
        '{"key": "loss", "value": 1, "timestamp": 1, "step": 1}\n{"key": "loss"}\n'
    )
    with pytest.raises(OutboxError, match=f"{PENDING_METRICS}, line 2: metric 'loss': value is not a number"):
        sync_run_folder(folder)
    assert artifacts(run_id) == set() and MlflowClient().get_run(run_id).data.metrics == {}


def test_a_record_the_store_refuses_is_one_line_and_what_came_before_stays_sent(
    tmp_path: Path, mlflow_uri: str
) -> None:
    """Names MLflow refuses (they could resolve to other files): the store's own refusal, in one line
    naming the record, with the records before it sent and removed."""
    bad_tag = {"op": "tags", "tags": {"../../x": "1"}}
    run_id, folder = outbox(
        tmp_path, [{"op": "tags", "tags": {"x": "1"}}, artifact("training_log.txt"), bad_tag]
    )
    with pytest.raises(OutboxError) as err:
        sync_run_folder(folder)
    message = str(err.value)
    assert message.startswith(f"{folder / PENDING_OPS}, line 1: the tracking store did not take this record")
    assert "../../x" in message and "\n" not in message
    assert artifacts(run_id) == {"training_log.txt"} and MlflowClient().get_run(run_id).data.tags["x"] == "1"
    assert [json.loads(x) for x in (folder / PENDING_OPS).read_text().splitlines()] == [bad_tag]

    run_id, folder = outbox(tmp_path, [artifact("training_log.txt")])
    (folder / PENDING_METRICS).write_text(
        json.dumps({"key": "../../x", "value": 1, "timestamp": 1, "step": 1})
    )
    with pytest.raises(OutboxError, match=f"{PENDING_METRICS}: the tracking store did not take this record"):
        sync_run_folder(folder)
    assert artifacts(run_id) == set() and (folder / PENDING_METRICS).exists()


def test_our_own_records_upload_relative_and_old_absolute_ones_inside(
    tmp_path: Path, mlflow_uri: str
) -> None:
    """Paths relative to the folder (this version), absolute inside it (older versions), a symlink that
    stays inside: all uploaded; the store is MLFLOW_TRACKING_URI, the folder's URI only shown."""
    ops = [
        artifact("checkpoints/epoch_1.ckpt", "checkpoints"),
        {"op": "artifacts", "path": "index", "artifact_path": "index"},
        {"op": "params", "params": {"lr": "0.1"}},
        {"op": "dict", "values": {"a": 1}, "artifact_file": "config.json"},
    ]
    run_id, folder = outbox(tmp_path, ops)
    (folder / "index").mkdir()
    (folder / "index" / "part.arrow").write_text("rows")
    (folder / "index" / "same.arrow").symlink_to(folder / "index" / "part.arrow")
    with open(folder / PENDING_OPS, "a") as f:
        f.write(json.dumps(artifact(str(folder.resolve() / "training_log.txt"))) + "\n")
    message = sync_run_folder(folder)
    assert message.startswith(
        f"uploaded 1 metric points and 5 artifacts/params/tags to run {run_id} in {mlflow_uri}"
    )
    assert "(the folder named sqlite:///nowhere.db); status FINISHED" in message
    assert not (tmp_path / "nowhere.db").exists()
    assert artifacts(run_id) == {
        "checkpoints/epoch_1.ckpt", "index/part.arrow", "index/same.arrow", "config.json", "training_log.txt"
    }  # fmt: skip
    run = MlflowClient().get_run(run_id)
    assert (
        run.info.status == "FINISHED"
        and run.data.params == {"lr": "0.1"}
        and run.data.metrics == {"loss": 0.5}
    )
    assert not any((folder / name).exists() for name in (PENDING_MANIFEST, PENDING_METRICS, PENDING_OPS))


def test_no_store_given_is_refused_naming_the_fix(
    tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, folder = outbox(tmp_path, [artifact("training_log.txt")], manifest={"tracking_uri": mlflow_uri})
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with pytest.raises(TrackingError) as err:
        sync_run_folder(folder)
    message = str(err.value)
    assert "set MLFLOW_TRACKING_URI or pass --tracking-uri" in message and mlflow_uri in message
    assert artifacts(run_id) == set()
    assert sync_run_folder(folder, tracking_uri=mlflow_uri).endswith("status FINISHED")  # the explicit option
    assert artifacts(run_id) == {"training_log.txt"}


def test_a_sync_that_failed_half_way_resumes_and_a_later_bad_line_is_named_in_the_file_as_it_is(
    tmp_path: Path, mlflow_uri: str
) -> None:
    """What was sent stays removed; the line numbers are those of the file as it is now."""
    ops = [
        {"op": "tags", "tags": {"x": "1"}},
        artifact("training_log.txt"),
        artifact("checkpoints/epoch_1.ckpt"),
    ]
    run_id, folder = outbox(tmp_path, ops)

    class GoneAtTheSecondArtifact(MlflowClient):
        calls = 0

        def log_artifact(self, *args: Any, **kwargs: Any) -> None:
            type(self).calls += 1
            if type(self).calls == 2:
                raise ConnectionError("the server went away")
            super().log_artifact(*args, **kwargs)

    with pytest.raises(ConnectionError):
        sync_run_folder(folder, client=GoneAtTheSecondArtifact())
    assert artifacts(run_id) == {"training_log.txt"}
    assert [json.loads(x)["path"] for x in (folder / PENDING_OPS).read_text().splitlines()] == [
        "checkpoints/epoch_1.ckpt"
    ]
    with open(folder / PENDING_OPS, "a") as f:
        f.write(json.dumps(artifact("/etc/passwd")) + "\n")
    with pytest.raises(OutboxError, match=f"{PENDING_OPS}, line 2: the path '/etc/passwd' lies outside"):
        sync_run_folder(folder)
    assert artifacts(run_id) == {"training_log.txt"}  # nothing more
    (folder / PENDING_OPS).write_text((folder / PENDING_OPS).read_text().splitlines()[0] + "\n")
    assert "0 metric points and 1 artifacts" in sync_run_folder(folder)
    assert artifacts(run_id) == {"training_log.txt", "epoch_1.ckpt"}


def test_metric_batches_sent_before_a_failure_are_not_sent_again(
    tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "BATCH_POINTS", 2)
    run_id, folder = outbox(tmp_path, [])
    lines = [json.dumps({"key": "loss", "value": float(i), "timestamp": 1, "step": i}) for i in range(5)]
    (folder / PENDING_METRICS).write_text("\n".join(lines) + "\n")

    class GoneAtTheSecondBatch(MlflowClient):
        batches = 0

        def log_batch(self, *args: Any, **kwargs: Any) -> None:
            type(self).batches += 1
            if type(self).batches == 2:
                raise ConnectionError("the server went away")
            super().log_batch(*args, **kwargs)

    with pytest.raises(ConnectionError):
        sync_run_folder(folder, client=GoneAtTheSecondBatch())
    assert (folder / PENDING_METRICS).read_text().splitlines() == lines[2:]
    assert sync_run_folder(folder).startswith("uploaded 3 metric points")
    steps = [m.step for m in MlflowClient().get_metric_history(run_id, "loss")]
    assert sorted(steps) == [0, 1, 2, 3, 4]  # each once


def test_a_file_logged_from_outside_the_folder_is_kept_inside_it(
    tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step may log a file from elsewhere: when the run ends offline, the outbox keeps a copy in the
    folder (the record stays self-contained, and sync can refuse everything outside)."""
    monkeypatch.setenv("SEQTRACK_TRACKING_PROBE_S", "3600")
    monkeypatch.setenv("SEQTRACK_TRACKING_FINAL_WAIT_S", "0")
    run_id = MlflowClient().create_run("0").info.run_id
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "curve.png").write_bytes(b"png")
    health = Health(store=lambda: mlflow_uri)
    health.lost(ConnectionError("away"))  # as after a failed call: everything queues, no probe for an hour
    logger = RunLogger(run_id, tmp_path / "outputs" / run_id, health=health)
    logger.log_artifact(tmp_path / "plots" / "curve.png", "plots")
    logger.log_artifacts(tmp_path / "plots", "all_plots")
    folder, _, calls = logger.persist("FINISHED")
    assert logger.finish() is None and calls == 2
    records = [json.loads(x) for x in (folder / PENDING_OPS).read_text().splitlines()]
    assert all(r["path"].startswith(f"{PENDING_FILES}/") for r in records), records
    (tmp_path / "plots" / "curve.png").write_bytes(b"changed later")  # the copy is what was logged
    sync_run_folder(folder)
    assert artifacts(run_id) == {"plots/curve.png", "all_plots/curve.png"}
    assert not (folder / PENDING_FILES).exists()


def test_the_sync_command_refuses_in_one_line_and_takes_the_store_option(
    tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, folder = outbox(tmp_path, [{"op": "tags", "tags": {"x": "1"}}, artifact("/etc/passwd")])
    result = CliRunner().invoke(main, ["sync", str(folder)])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {folder / PENDING_OPS}, line 2: the path '/etc/passwd' lies outside"), (
        line
    )
    assert artifacts(run_id) == set()

    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    (folder / PENDING_OPS).write_text(json.dumps(artifact("training_log.txt")) + "\n")
    result = CliRunner().invoke(main, ["sync", str(folder)])
    assert result.exit_code == 2 and "pass --tracking-uri" in result.stderr, result.output
    result = CliRunner().invoke(main, ["sync", "--tracking-uri", mlflow_uri, str(folder)])
    assert result.exit_code == 0, result.output
    assert artifacts(run_id) == {"training_log.txt"}
