"""Health: whether the tracking store answers, said in one line when lost and one when back."""

from __future__ import annotations

import os

import pytest

from seqtrack_mlflow.tracking import Health, fail_fast_http
from seqtrack_mlflow.tracking.health import FAIL_FAST_HTTP

LOST, BACK = "is unreachable (", "is back after"


def test_lost_once_then_back_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SEQTRACK_TRACKING_PROBE_S", "0")
    health = Health(store=lambda: "http://stub:5000")
    assert health.online and health.usable(lambda: pytest.fail("no probe while online"))
    health.lost(ConnectionError("refused\nsecond line"))
    health.lost(ConnectionError("refused again"))  # already offline: silent
    assert not health.online
    err = capsys.readouterr().err
    assert err.count(LOST) == 1 and "http://stub:5000 is unreachable (refused)" in err and "second" not in err

    assert not health.usable(lambda: False) and not health.online  # probed: still away
    assert health.usable(lambda: True) and health.online
    err = capsys.readouterr().err
    assert err.count(BACK) == 1 and "http://stub:5000 is back after" in err

    health.lost(ConnectionError("refused"))  # a second outage is announced again
    assert capsys.readouterr().err.count(LOST) == 1


def test_probes_wait_for_their_schedule_unless_asked_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEQTRACK_TRACKING_PROBE_S", "3600")
    health = Health(store=lambda: "stub")
    health.lost(ConnectionError("refused"))
    probes: list[int] = []

    def probe() -> bool:
        probes.append(1)
        return True

    assert not health.usable(probe) and probes == []  # the next probe is an hour away
    health.probe_now()
    assert health.usable(probe) and probes == [1] and health.online


def test_fresh_health_objects_are_independent_of_the_process_one() -> None:
    from seqtrack_mlflow.tracking import HEALTH

    health = Health(store=lambda: "stub")
    health.lost(ConnectionError("refused"))
    assert not health.online and HEALTH.online


def test_fail_fast_http_sets_defaults_but_keeps_the_users_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in FAIL_FAST_HTTP:  # restored as they were after the test
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    fail_fast_http()
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "60"
