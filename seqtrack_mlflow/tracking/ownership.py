"""One process per run: a run being continued is owned, by a tag with a heartbeat, until its owner ends.

MLflow has no compare-and-set, so a claim is: refuse if the run has a live owner; else write our token
and heartbeat, wait a moment and read the owner back: of two processes that claim at once, the last
writer wins and the other sees its token gone and refuses. The owner and heartbeat tags are removed when
the owner is done (`release_run`): only a run being continued, or one whose process was killed, has
them. A killed process (kill -9, the OOM killer) cannot remove them: on its own machine its claim is
free at once (the process table says it is gone, `owner.dead_here`), seen from anywhere else
once its heartbeat is stale. `owned_run` is the three together: claim, keep the heartbeat fresh,
release on the way out, whatever way that is.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from mlflow.tracking import MlflowClient

from seqtrack_mlflow.tracking.health import say
from seqtrack_mlflow.tracking.owner import dead_here, my_token, parse_token, same_pid_space
from seqtrack_mlflow.tracking.store import TrackingError

OWNER_TAG, HEARTBEAT_TAG = "seqtrack.owner", "seqtrack.heartbeat"
HEARTBEAT_EVERY_S = 30.0
HEARTBEAT_STALE_S = 120.0  # a run whose owner has not beaten for this long is free to continue
CLAIM_SETTLE_S = 2.0  # wait before reading the owner back: a concurrent claim lands within it


@contextlib.contextmanager
def owned_run(
    run_id: str,
    *,
    settle: float = CLAIM_SETTLE_S,
    stale_after: float = HEARTBEAT_STALE_S,
    heartbeat_every: float = HEARTBEAT_EVERY_S,
    wait: bool = False,
    client: Any | None = None,
) -> Iterator[str]:
    """Own `run_id` for the block (yields the owner token): `claim_run` (a TrackingError if another
    process owns it), a `Heartbeat` meanwhile, `release_run` on exit, by an exception too.
    `settle=0` for a run this process just created (nobody else knows it yet). `wait`: see
    `claim_run`. `client`: for tests."""
    token = claim_run(run_id, stale_after=stale_after, settle=settle, wait=wait, client=client)
    try:
        with Heartbeat(run_id, heartbeat_every, client=client):
            yield token
    finally:
        release_run(run_id, token, client=client)


def claim_run(
    run_id: str,
    *,
    stale_after: float = HEARTBEAT_STALE_S,
    settle: float = CLAIM_SETTLE_S,
    wait: bool = False,
    client: Any | None = None,
) -> str:
    """Make this process the only one continuing `run_id` (see the module); returns the owner token.

    `wait`: an owner that is not known dead is given until its heartbeat is stale (`stale_after`)
    before the claim is refused. A job a scheduler restarts on another node (`resume=auto`) finds its
    previous start's claim there when that start was killed (SIGKILL after the grace period): only
    the heartbeat can tell it is dead, and the restart waits for that instead of failing."""
    client = client if client is not None else MlflowClient()
    gone = _wait_until_free(client, run_id, stale_after) if wait else None
    gone = gone or _refuse_if_owned(client, run_id, stale_after, None)
    if gone:
        say(f"run {run_id}: {gone}: this process continues it")
    token = str(my_token())
    client.set_tag(run_id, OWNER_TAG, token)
    client.set_tag(run_id, HEARTBEAT_TAG, f"{time.time():.0f}")
    time.sleep(settle)
    _refuse_if_owned(client, run_id, float("inf"), token)
    return token


def _wait_until_free(client: Any, run_id: str, stale_after: float) -> str | None:
    """Retry the claim's check until the owner is gone or its heartbeat stale (at most `stale_after`
    and a quarter): one line says why it waits. Returns what the check returns; its refusal at the end."""
    deadline = time.monotonic() + stale_after * 1.25
    said = False
    while True:
        try:
            return _refuse_if_owned(client, run_id, stale_after, None)
        except TrackingError as exc:
            if time.monotonic() > deadline:
                raise
            if not said:
                say(f"{exc}; waiting up to {stale_after:.0f} s for its heartbeat to go stale")
                said = True
            time.sleep(min(5.0, stale_after / 10))


def _refuse_if_owned(client: Any, run_id: str, stale_after: float, token: str | None) -> str | None:
    """Return when the run has no owner, is ours (`token`), or its owner is dead (then: a phrase saying
    why it is taken as dead); else refuse, saying where the owner lives. `token` given: the read-back
    after our claim, where any other owner wins."""
    run = client.get_run(run_id)
    owner = run.data.tags.get(OWNER_TAG)
    if owner is None or owner == token:
        return None
    if token is not None:
        raise TrackingError(
            f"run {run_id} was claimed at the same moment by another process ({owner}): "
            "only one may continue it"
        )
    try:
        beat = float(run.data.tags.get(HEARTBEAT_TAG, "0") or 0)
    except ValueError:
        beat = 0.0
    age = time.time() - beat
    parsed = parse_token(owner)
    here = parsed is not None and same_pid_space(parsed)
    why = dead_here(parsed, beat) if here and parsed is not None else None
    if why is not None:
        return f"its owner {owner} is gone ({why})"
    if age > stale_after:
        return f"its owner {owner} has not beaten for {age:.0f} s"
    if parsed is None:
        where = "of unknown origin"
    elif here:
        raise TrackingError(
            f"run {run_id} is being continued by another process ({owner}), alive on this host as PID "
            f"{parsed.pid}: wait for it to end, or stop it (kill {parsed.pid})"
        )
    elif parsed.host == socket.gethostname():
        where = f"on this host {parsed.host} but in another container (or before a reboot)"
    else:
        where = f"on host {parsed.host}"
    raise TrackingError(
        f"run {run_id} is being continued by another process ({owner}) {where}, last heartbeat {age:.0f} s "
        "ago: wait for it to end, or stop it there; a run whose process died is free again "
        f"{stale_after:.0f} s after its last heartbeat"
    )


def release_run(run_id: str, token: str, *, client: Any | None = None) -> None:
    """Drop our claim (the run is free to continue at once), then its heartbeat: a run that ended keeps
    neither tag among those users read. A failure here only delays the next claim."""
    client = client if client is not None else MlflowClient()
    with contextlib.suppress(Exception):
        if client.get_run(run_id).data.tags.get(OWNER_TAG) == token:
            client.delete_tag(run_id, OWNER_TAG)  # first: an owner never stands without its heartbeat
            client.delete_tag(run_id, HEARTBEAT_TAG)


class Heartbeat:
    """Keeps `seqtrack.heartbeat` fresh on a run from a daemon thread, so a second process can tell a
    live owner from a dead one."""

    def __init__(self, run_id: str, every: float = HEARTBEAT_EVERY_S, *, client: Any | None = None):
        self.run_id, self.every = run_id, every
        self._client = client
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="seqtrack-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        client = self._client if self._client is not None else MlflowClient()
        while not self._stop.wait(self.every):
            # A missed beat only makes the run look idle sooner.
            with contextlib.suppress(Exception):
                client.set_tag(self.run_id, HEARTBEAT_TAG, f"{time.time():.0f}")
