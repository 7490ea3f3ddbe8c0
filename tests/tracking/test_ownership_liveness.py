"""Issue 20, case 1, without a server (a stub client): a run owned by a process of this machine is free at
once when that process is gone (PID gone, a zombie, or the PID reused by a later process); a live one is
refused, saying so; an owner elsewhere is judged by its heartbeat alone, and the refusal names its host
and the heartbeat's age. Owner tokens of older versions (host:pid:nonce) are still read."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest
from stub_client import StubClient

from seqtrack_mlflow.tracking import HEARTBEAT_TAG, OWNER_TAG, TrackingError, claim_run
from seqtrack_mlflow.tracking.owner import OwnerToken, my_token, parse_token, pid_space

RUN = "0123456789abcdef0123456789abcdef"
HOST = socket.gethostname()


def owned(token: OwnerToken | str, beat_age_s: float = 5.0) -> StubClient:
    client = StubClient()
    client.tags = {OWNER_TAG: str(token), HEARTBEAT_TAG: f"{time.time() - beat_age_s:.0f}"}
    return client


def here(pid: int, start: float) -> OwnerToken:
    """A token as a process `pid` of this machine started at `start` writes it."""
    return OwnerToken(HOST, pid, round(start, 2), pid_space(), "5eed5eed")


@pytest.fixture
def live_child() -> Iterator[psutil.Process]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield psutil.Process(proc.pid)
    finally:
        proc.kill()
        proc.wait(timeout=30)


def dead_child() -> tuple[int, float]:
    """The PID and start time of a process that ran and was reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    start = psutil.Process(proc.pid).create_time()
    proc.kill()
    proc.wait(timeout=30)
    assert not psutil.pid_exists(proc.pid)
    return proc.pid, start


def test_an_owner_whose_process_is_gone_on_this_host_is_free_at_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pid, start = dead_child()
    client = owned(here(pid, start), beat_age_s=1)  # the heartbeat is fresh: the process table decides
    token = claim_run(RUN, settle=0, client=client)
    assert client.tags[OWNER_TAG] == token and parse_token(token) is not None
    note = f"run {RUN}: its owner {here(pid, start)} is gone (its process {pid} no longer exists)"
    assert note in capsys.readouterr().err


def test_a_live_owner_on_this_host_is_refused_naming_its_pid(live_child: psutil.Process) -> None:
    client = owned(here(live_child.pid, live_child.create_time()), beat_age_s=0)
    with pytest.raises(TrackingError) as err:
        claim_run(RUN, settle=0, client=client)
    message = str(err.value)
    assert f"run {RUN} is being continued by another process" in message
    assert f"alive on this host as PID {live_child.pid}" in message and f"kill {live_child.pid}" in message
    assert "\n" not in message
    assert client.tags[OWNER_TAG] == str(here(live_child.pid, live_child.create_time()))  # untouched


def test_an_owner_whose_pid_now_belongs_to_a_later_process_is_free(
    live_child: psutil.Process, capsys: pytest.CaptureFixture[str]
) -> None:
    """The recorded start is 100 s before the process now holding the PID, the heartbeat 50 s before it
    (fresh: only the start time can tell)."""
    started = live_child.create_time()
    client = owned(here(live_child.pid, started - 100), beat_age_s=time.time() - (started - 50))
    assert time.time() - float(client.tags[HEARTBEAT_TAG]) < 120
    token = claim_run(RUN, settle=0, client=client)
    assert client.tags[OWNER_TAG] == token
    assert f"(PID {live_child.pid} now belongs to another process (started later))" in capsys.readouterr().err


def test_a_killed_owner_not_yet_reaped_is_free() -> None:
    """kill -9 leaves a zombie until the parent waits for it: it never runs again."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        start = psutil.Process(proc.pid).create_time()
        os.kill(proc.pid, signal.SIGKILL)
        deadline = time.time() + 10
        while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.time() < deadline
            time.sleep(0.02)
        client = owned(here(proc.pid, start))
        assert claim_run(RUN, settle=0, client=client) == client.tags[OWNER_TAG]
    finally:
        proc.wait(timeout=30)


def test_an_owner_on_another_host_waits_for_its_heartbeat() -> None:
    other = OwnerToken("node-7", os.getpid(), time.time() - 3600, "0123abcd", "deadbeef")  # our PID there
    client = owned(other, beat_age_s=10)
    with pytest.raises(TrackingError) as err:
        claim_run(RUN, settle=0, client=client)
    message = str(err.value)
    assert re.search(rf"\({other}\) on host node-7, last heartbeat (9|10|11) s ago", message), message
    assert "free again 120 s after its last heartbeat" in message
    client = owned(other, beat_age_s=500)
    assert claim_run(RUN, settle=0, client=client) == client.tags[OWNER_TAG]


def test_same_host_name_in_another_pid_space_is_judged_by_the_heartbeat() -> None:
    """Two containers of one node may share a host name: a PID of the other is not ours to look up."""
    pid, start = dead_child()
    other_container = OwnerToken(HOST, pid, round(start, 2), "ffffffff", "deadbeef")
    assert other_container.space != pid_space()
    with pytest.raises(TrackingError, match="in another container"):
        claim_run(RUN, settle=0, client=owned(other_container, beat_age_s=5))
    claim_run(RUN, settle=0, client=owned(other_container, beat_age_s=500))


def test_old_tokens_are_read(live_child: psutil.Process) -> None:
    pid, _ = dead_child()
    assert claim_run(RUN, settle=0, client=owned(f"{HOST}:{pid}:0567f22a"))  # gone: free at once
    with pytest.raises(TrackingError, match=f"alive on this host as PID {live_child.pid}"):
        # a live owner has beaten since it started (an old token holds no start time)
        claim_run(RUN, settle=0, client=owned(f"{HOST}:{live_child.pid}:0567f22a", beat_age_s=0))
    old = parse_token("gpu-3:42:deadbeef")
    assert old == OwnerToken("gpu-3", 42, None, None, "deadbeef") and str(old) == "gpu-3:42:deadbeef"


def test_a_token_of_unknown_form_waits_for_the_heartbeat() -> None:
    with pytest.raises(TrackingError, match=r"\(someone\) of unknown origin, last heartbeat"):
        claim_run(RUN, settle=0, client=owned("someone", beat_age_s=5))
    claim_run(RUN, settle=0, client=owned("someone", beat_age_s=500))


def test_our_token_reads_back() -> None:
    token = my_token()
    assert token.pid == os.getpid() and token.host == HOST and token.space == pid_space()
    assert abs(token.start - psutil.Process().create_time()) < 0.01
    assert parse_token(str(token)) == token


def test_a_pid_hidden_from_proc_but_known_to_the_kernel_is_taken_as_alive(
    live_child: psutil.Process, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/proc mounted with hidepid shows no other user's process: psutil says 'no such process', the
    kernel's kill(pid, 0) knows better. Unsure means alive (the heartbeat decides)."""
    token = here(live_child.pid, live_child.create_time())

    def hidden(pid: int) -> psutil.Process:
        raise psutil.NoSuchProcess(pid)

    monkeypatch.setattr(psutil, "Process", hidden)
    with pytest.raises(TrackingError, match=f"alive on this host as PID {live_child.pid}"):
        claim_run(RUN, settle=0, client=owned(token, beat_age_s=0))
    assert claim_run(RUN, settle=0, client=owned(token, beat_age_s=500))  # stale: free as before
