"""The offline queue without a server (a stub client): a failed call takes the process offline with one
warning line, later calls queue in order, the end of the run writes them as the run's outbox, and
`sync` replays the outbox in order, removing each part once sent. The real-server version of the same
story is tests/e2e/test_outage.py (slow tier)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from stub_client import StubClient

from seqtrack_mlflow.tracking import Health, Outbox, RunLogger, TrackingError, store_uri, sync_run_folder
from seqtrack_mlflow.tracking import logger as logger_module
from seqtrack_mlflow.tracking.outbox import PENDING_MANIFEST, PENDING_METRICS, PENDING_OPS

RUN = "0123456789abcdef0123456789abcdef"
LOST, BACK = "is unreachable (", "is back after"


@pytest.fixture
def offline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No probe on the sender's schedule, no final wait: the test decides when the store is back."""
    monkeypatch.setenv("SEQTRACK_TRACKING_PROBE_S", "3600")
    monkeypatch.setenv("SEQTRACK_TRACKING_FINAL_WAIT_S", "0")


def new_logger(tmp_path: Path, client: StubClient) -> RunLogger:
    return RunLogger(RUN, tmp_path / RUN, client=client, health=Health(store=lambda: "http://stub:5000"))


def log_offline(tmp_path: Path, client: StubClient) -> tuple[RunLogger, Path]:
    """A run whose store goes away before its first call: a tag, two artifacts (a file and a folder in
    the run's folder, where the steps write them), params, a dict, metrics."""
    (tmp_path / RUN / "index").mkdir(parents=True, exist_ok=True)
    (tmp_path / RUN / "index" / "part.arrow").write_text("rows")
    (tmp_path / RUN / "log.txt").write_text("a log")
    logger = new_logger(tmp_path, client)
    client.down = True
    logger.set_tags({"seqtrack.preset": "tiny"})
    logger.log_artifact(tmp_path / RUN / "log.txt")
    assert logger.log_params({"lr": 1e-4, "epochs": 2}) == {}  # queued: nothing to compare with yet
    logger.log_artifacts(tmp_path / RUN / "index", "folder")
    logger.log_dict({"a": 1}, "config.json")
    logger.log_metrics({"loss": 0.5, "iou": 0.25}, step=10)
    logger.log_metrics({"loss": 0.4}, step=20)
    return logger, tmp_path / RUN / "log.txt"


def test_a_store_failure_goes_offline_with_one_line_and_the_outbox_keeps_every_call_in_order(
    tmp_path: Path, offline_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    client = StubClient()
    logger, log_file = log_offline(tmp_path, client)
    assert not logger.health.online and client.sent == []
    folder = logger.finish()
    assert folder == (tmp_path / RUN).resolve()
    assert logger.persist("FINISHED") == (folder, 3, 5)

    err = capsys.readouterr().err
    assert err.count(LOST) == 1 and BACK not in err, err
    (line,) = [x for x in err.splitlines() if LOST in x]
    assert "http://stub:5000" in line and "Max retries exceeded (set_tag)" not in line  # first line only
    ops = [json.loads(x) for x in (folder / PENDING_OPS).read_text().splitlines()]
    assert [op["op"] for op in ops] == ["tags", "artifact", "params", "artifacts", "dict"]
    assert ops[1]["path"] == "log.txt" and ops[3]["path"] == "index"  # relative to the run's folder
    assert ops[2]["params"] == {"lr": "0.0001", "epochs": "2"}
    points = [json.loads(x) for x in (folder / PENDING_METRICS).read_text().splitlines()]
    assert [(p["key"], p["value"], p["step"]) for p in points] == [
        ("loss", 0.5, 10),
        ("iou", 0.25, 10),
        ("loss", 0.4, 20),
    ]
    manifest = json.loads((folder / PENDING_MANIFEST).read_text())
    assert manifest["run_id"] == RUN and manifest["status"] == "FINISHED"
    assert manifest["tracking_uri"] == store_uri() and manifest["dropped_metric_points"] == 0


def test_sync_replays_the_outbox_in_order_and_removes_it(tmp_path: Path, offline_env: None) -> None:
    client = StubClient()
    client.params = {"epochs": "5"}  # held by the run (an earlier session): the queued 2 goes to resumed.*
    logger, log_file = log_offline(tmp_path, client)
    folder = logger.finish()
    logger.persist("KILLED")
    client.down = False

    message = sync_run_folder(folder, client=client)
    assert message.startswith(f"uploaded 3 metric points and 5 artifacts/params/tags to run {RUN}")
    assert message.endswith("status KILLED")
    assert client.sent == [
        ("metrics", 3),
        ("tags", ("seqtrack.preset",)),
        ("artifact", str(log_file.resolve()), None),
        ("params", ("lr", "resumed.epochs")),
        ("artifacts", str((tmp_path / RUN / "index").resolve()), "folder"),
        ("dict", "config.json"),
        ("terminated", "KILLED"),
    ]
    assert client.params == {"epochs": "5", "lr": "0.0001", "resumed.epochs": "2"}
    assert client.metrics == [("loss", 0.5, 10), ("iou", 0.25, 10), ("loss", 0.4, 20)]
    assert not any((folder / name).exists() for name in (PENDING_MANIFEST, PENDING_METRICS, PENDING_OPS))
    with pytest.raises(TrackingError, match="holds no pending_upload.json"):
        sync_run_folder(folder, client=client)


def test_a_second_sync_after_a_failure_sends_only_the_rest(tmp_path: Path, offline_env: None) -> None:
    client = StubClient()
    logger, _ = log_offline(tmp_path, client)
    folder = logger.finish()
    logger.persist("FINISHED")
    client.down = False
    client.refuse["log_artifacts"] = ConnectionError("the server went away again")

    with pytest.raises(ConnectionError):
        sync_run_folder(folder, client=client)
    assert [s[0] for s in client.sent] == ["metrics", "tags", "artifact", "params"]
    assert not (folder / PENDING_METRICS).exists()  # sent: removed
    left = [json.loads(x)["op"] for x in (folder / PENDING_OPS).read_text().splitlines()]
    assert left == ["artifacts", "dict"] and (folder / PENDING_MANIFEST).exists()

    client.sent.clear()
    assert "0 metric points and 2 artifacts/params/tags" in sync_run_folder(folder, client=client)
    assert [s[0] for s in client.sent] == ["artifacts", "dict", "terminated"]
    assert client.status == "FINISHED" and not (folder / PENDING_MANIFEST).exists()


def test_sync_with_the_store_still_away_is_one_line_and_keeps_everything(
    tmp_path: Path, offline_env: None
) -> None:
    client = StubClient()
    logger, _ = log_offline(tmp_path, client)
    folder = logger.finish()
    logger.persist("FINISHED")
    before = {p.name: p.read_text() for p in folder.iterdir() if p.name.startswith("pending")}
    with pytest.raises(TrackingError) as err:
        sync_run_folder(folder, client=client)
    assert f"run {RUN} cannot be reached" in str(err.value) and "\n" not in str(err.value)
    assert {p.name: p.read_text() for p in folder.iterdir() if p.name.startswith("pending")} == before


def test_a_later_session_appends_to_the_outbox(tmp_path: Path, offline_env: None) -> None:
    """A resumed run that ends offline again: the outbox holds both sessions' calls, dropped points add up."""
    folder = tmp_path / RUN
    Outbox(folder).write(
        run_id=RUN, status="KILLED", points=[], ops=[{"op": "tags", "tags": {"a": "1"}}], dropped_points=2
    )
    client = StubClient()
    logger, _ = log_offline(tmp_path, client)
    logger.finish()
    logger.persist("FINISHED")
    manifest = Outbox(folder).manifest()
    assert manifest["status"] == "FINISHED" and manifest["dropped_metric_points"] == 2
    ops = [json.loads(x)["op"] for x in (folder / PENDING_OPS).read_text().splitlines()]
    assert ops == ["tags", "tags", "artifact", "params", "artifacts", "dict"]


def test_the_buffer_keeps_the_last_points_and_sync_tags_the_dropped_count(
    tmp_path: Path, offline_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logger_module, "METRIC_BUFFER_POINTS", 2)
    client = StubClient()
    logger = new_logger(tmp_path, client)
    client.down = True
    logger.set_tags({"a": 1})  # goes offline
    for step in (1, 2, 3, 4):
        logger.log_metrics({"loss": float(step)}, step=step)
    folder = logger.finish()
    assert logger.persist("FINISHED")[1] == 2 and logger.dropped_points == 2
    client.down = False
    sync_run_folder(folder, client=client)
    assert client.metrics == [("loss", 3.0, 3), ("loss", 4.0, 4)]
    assert client.tags["seqtrack.dropped_metric_points"] == "2"


def test_a_reupload_of_the_same_file_is_queued_once(tmp_path: Path, offline_env: None) -> None:
    """The training log is re-uploaded at every checkpoint: while offline, only its last upload waits."""
    (tmp_path / "log.txt").write_text("a log")
    client = StubClient()
    logger = new_logger(tmp_path, client)
    client.down = True
    logger.set_tags({"a": 1})
    for _ in range(3):
        logger.log_artifact(tmp_path / "log.txt")
        logger.log_artifact(tmp_path / "other.txt")
    logger.finish()
    assert logger.persist("FINISHED")[2] == 3  # tags, log.txt, other.txt


def test_back_online_the_sender_sends_the_queue_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SEQTRACK_TRACKING_PROBE_S", "0")
    monkeypatch.setattr(logger_module, "SEND_EVERY_S", 0.02)
    client = StubClient()
    logger, log_file = log_offline(tmp_path, client)
    client.down = False
    deadline = time.time() + 10
    while not logger.health.online and time.time() < deadline:
        time.sleep(0.02)
    assert logger.flush(timeout=10) and logger.finish() is None
    assert [s[0] for s in client.sent] == ["tags", "artifact", "params", "artifacts", "dict", "metrics"]
    assert len(client.metrics) == 3
    err = capsys.readouterr().err
    assert err.count(LOST) == 1 and err.count(BACK) == 1, err
    assert not list((tmp_path / RUN).glob("pending*"))  # nothing left to persist


def test_a_call_the_store_refuses_while_it_answers_raises_its_own_error(tmp_path: Path) -> None:
    """Not an outage: the store answers the probe, so the call's error is the caller's, and no queue."""
    client = StubClient()
    logger = new_logger(tmp_path, client)
    client.refuse["log_artifact"] = ValueError("artifact too large")
    with pytest.raises(ValueError, match="artifact too large"):
        logger.log_artifact(tmp_path / "log.txt")
    assert logger.health.online and logger.finish() is None
