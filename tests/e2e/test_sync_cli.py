"""`seqtrack-mlflow sync` as a user types it, in its own process, on a crafted run folder."""

from __future__ import annotations

import json
from pathlib import Path

from factories import artifact, artifacts, outbox
from mlflow.tracking import MlflowClient
from services import cli

from seqtrack_mlflow.tracking.outbox import PENDING_OPS


def test_sync_as_a_user_types_it_uploads_nothing_from_a_crafted_folder(
    tmp_path: Path, mlflow_uri: str
) -> None:
    """The real command in its own process, the store only in --tracking-uri."""
    run_id, folder = outbox(tmp_path, [{"op": "tags", "tags": {"x": "1"}}, artifact("/etc/passwd")])
    (folder / "index").mkdir()
    (folder / "index" / "leak").symlink_to("/etc/passwd")
    with open(folder / PENDING_OPS, "a") as f:
        f.write(json.dumps({"op": "artifacts", "path": "index", "artifact_path": "index"}) + "\n")
    unset = {"MLFLOW_TRACKING_URI": ""}
    done = cli("sync", "--tracking-uri", mlflow_uri, str(folder), env=unset, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {folder / PENDING_OPS}, line 2: the path '/etc/passwd' lies outside"), (
        line
    )
    (folder / PENDING_OPS).write_text("\n".join((folder / PENDING_OPS).read_text().splitlines()[2:]) + "\n")
    done = cli("sync", "--tracking-uri", mlflow_uri, str(folder), env=unset, timeout=120)
    assert done.returncode == 2 and "'leak' in the folder 'index' leads outside" in done.stderr, done.stderr
    assert artifacts(run_id) == set()
    (folder / "index" / "leak").unlink()
    (folder / "index" / "part.arrow").write_text("rows")
    done = cli("sync", "--tracking-uri", mlflow_uri, str(folder), env=unset, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"to run {run_id} in {mlflow_uri} (the folder named sqlite:///nowhere.db)" in done.stdout
    assert artifacts(run_id) == {"index/part.arrow"}
    assert MlflowClient().get_run(run_id).info.status == "FINISHED"
