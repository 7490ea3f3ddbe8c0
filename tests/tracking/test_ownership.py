"""One process per run without a server (a stub client): a claim with a fresh heartbeat is refused, a
stale one is free, of two claims at once one loses; `owned_run` releases on exit, by an exception too."""

from __future__ import annotations

import threading
import time

import pytest
from stub_client import StubClient

from seqtrack_mlflow.tracking import (
    HEARTBEAT_TAG,
    OWNER_TAG,
    TrackingError,
    claim_run,
    owned_run,
    release_run,
)

RUN = "0123456789abcdef0123456789abcdef"


def owned_by_other(beat_age_s: float) -> StubClient:
    client = StubClient()
    client.tags = {OWNER_TAG: "other-host:42:deadbeef", HEARTBEAT_TAG: f"{time.time() - beat_age_s:.0f}"}
    return client


def test_a_run_with_a_live_owner_is_refused() -> None:
    client = owned_by_other(beat_age_s=10)
    with pytest.raises(TrackingError, match=f"run {RUN} is being continued by another process") as err:
        claim_run(RUN, settle=0, client=client)
    assert "other-host:42:deadbeef" in str(err.value) and "free again 120 s after" in str(err.value)
    assert client.tags[OWNER_TAG] == "other-host:42:deadbeef"  # untouched


def test_a_run_whose_owner_stopped_beating_is_free() -> None:
    client = owned_by_other(beat_age_s=500)
    token = claim_run(RUN, settle=0, client=client)
    assert client.tags[OWNER_TAG] == token != "other-host:42:deadbeef"
    assert abs(float(client.tags[HEARTBEAT_TAG]) - time.time()) < 5


def test_of_two_claims_at_the_same_moment_one_loses() -> None:
    """Both read 'no owner' before either writes (a barrier after the first read forces it); the last
    writer keeps the run, the other sees its token gone."""
    client = StubClient()
    first_reads = threading.Barrier(2, timeout=10)
    seen: set[int] = set()

    def together() -> None:
        me = threading.get_ident()
        if me not in seen:
            seen.add(me)
            first_reads.wait()

    client.after_read = together
    won: list[str] = []
    lost: list[Exception] = []

    def claim() -> None:
        try:
            won.append(claim_run(RUN, settle=0.3, client=client))
        except TrackingError as exc:
            lost.append(exc)

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert len(won) == 1 and len(lost) == 1, (won, lost)
    assert client.tags[OWNER_TAG] == won[0]
    assert "claimed at the same moment by another process" in str(lost[0])


def test_release_drops_only_our_own_claim() -> None:
    client = owned_by_other(beat_age_s=10)
    release_run(RUN, "not-the-owner", client=client)
    assert client.tags[OWNER_TAG] == "other-host:42:deadbeef" and HEARTBEAT_TAG in client.tags
    release_run(RUN, "other-host:42:deadbeef", client=client)
    assert OWNER_TAG not in client.tags


def test_owned_run_holds_the_run_and_beats_then_releases() -> None:
    client = StubClient()
    with owned_run(RUN, settle=0, heartbeat_every=0.02, client=client) as token:
        assert client.tags[OWNER_TAG] == token
        with pytest.raises(TrackingError, match="being continued"):  # a second process meanwhile
            claim_run(RUN, settle=0, client=client)
        deadline = time.time() + 10
        while client.sent.count(("set_tag", HEARTBEAT_TAG)) < 3 and time.time() < deadline:
            time.sleep(0.02)
        assert client.sent.count(("set_tag", HEARTBEAT_TAG)) >= 3  # the claim's beat, then the heartbeat's
    assert OWNER_TAG not in client.tags and HEARTBEAT_TAG not in client.tags
    beats = client.sent.count(("set_tag", HEARTBEAT_TAG))
    time.sleep(0.1)
    assert client.sent.count(("set_tag", HEARTBEAT_TAG)) == beats  # the heartbeat stopped
    assert claim_run(RUN, settle=0, client=client)  # free again at once


def test_owned_run_releases_when_the_block_raises() -> None:
    client = StubClient()
    with pytest.raises(RuntimeError, match="training failed"), owned_run(RUN, settle=0, client=client):
        assert OWNER_TAG in client.tags
        raise RuntimeError("training failed")
    assert OWNER_TAG not in client.tags and ("delete_tag", OWNER_TAG) in client.sent
    assert HEARTBEAT_TAG not in client.tags  # a run that ended keeps no heartbeat among its tags


def test_owned_run_refused_runs_nothing_and_keeps_the_other_claim() -> None:
    client = owned_by_other(beat_age_s=10)
    ran = False
    with pytest.raises(TrackingError), owned_run(RUN, settle=0, client=client):
        ran = True
    assert not ran and client.tags[OWNER_TAG] == "other-host:42:deadbeef"


def test_waiting_claim_takes_the_run_once_a_dead_owners_heartbeat_is_stale(capsys) -> None:
    """A job restarted on another node (resume=auto) finds its killed start's claim: it waits for the
    heartbeat to go stale instead of failing."""
    client = StubClient()
    client.tags = {OWNER_TAG: "other-host:42:deadbeef", HEARTBEAT_TAG: f"{time.time():.3f}"}
    started = time.monotonic()
    token = claim_run(RUN, settle=0, stale_after=2.0, wait=True, client=client)
    assert 1.9 < time.monotonic() - started < 2.5
    assert client.tags[OWNER_TAG] == token
    err = capsys.readouterr().err
    assert "is being continued by another process (other-host:42:deadbeef)" in err
    assert "waiting up to 2 s for its heartbeat to go stale" in err and "has not beaten for" in err


def test_waiting_claim_is_refused_when_the_owner_keeps_beating() -> None:
    client = StubClient()
    client.tags = {OWNER_TAG: "other-host:42:deadbeef", HEARTBEAT_TAG: f"{time.time():.3f}"}
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(0.1):
            client.tags[HEARTBEAT_TAG] = f"{time.time():.3f}"

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    try:
        with pytest.raises(TrackingError, match="being continued by another process"):
            claim_run(RUN, settle=0, stale_after=1.0, wait=True, client=client)
    finally:
        stop.set()
        beater.join(timeout=5)
    assert client.tags[OWNER_TAG] == "other-host:42:deadbeef"
