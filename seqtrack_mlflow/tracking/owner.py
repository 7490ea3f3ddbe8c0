"""Who owns a run, and whether that owner still lives: the owner token and its liveness on this machine.

A token is `host:pid:start:space:nonce`: the host name, the process id, its start time (psutil's
`create_time`, seconds since the epoch) and a short id of the PID space it lives in (the boot and the
PID namespace: two containers of one host may share a host name, never a PID space). Tokens of older
versions, `host:pid:nonce`, are still read.

In our own PID space the process table answers at once: an owner whose PID is gone, or held by a
process started after the owner's own start or last heartbeat (the PID was reused), is dead. Anywhere
else (another host, another container, another boot) only the heartbeat can tell.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

# A process at the owner's PID that started this much later than the owner is another one. It covers
# the rounding of the recorded times and the jitter of the kernel's boot time (whole seconds).
START_SLACK_S = 2.0

_TOKEN = re.compile(
    r"(?P<host>[^:]+):(?P<pid>\d+)(?::(?P<start>\d+\.\d+):(?P<space>[0-9a-f]{8}))?:(?P<nonce>[0-9a-f]+)"
)


@dataclass(frozen=True)
class OwnerToken:
    host: str
    pid: int
    start: float | None  # None: a token of an older version
    space: str | None
    nonce: str

    def __str__(self) -> str:
        if self.start is None:
            return f"{self.host}:{self.pid}:{self.nonce}"
        return f"{self.host}:{self.pid}:{self.start:.2f}:{self.space}:{self.nonce}"


def pid_space() -> str:
    """8 hex digits naming where a PID means this process table: the boot and the PID namespace
    (Linux); the host name alone elsewhere."""
    parts = [socket.gethostname()]
    for path in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        with contextlib.suppress(OSError):
            parts.append(Path(path).read_text().strip() if "boot_id" in path else os.readlink(path))
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:8]


def process_start(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch); None when there is no such process or only
    its zombie (killed, not yet reaped by its parent: it never runs again); 0.0 when it may exist but the
    system will not say when it started (then it may be anyone: the owner is taken as alive)."""
    if pid <= 0:
        return 0.0
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except psutil.NoSuchProcess:
        return 0.0 if _hidden(pid) else None
    except psutil.AccessDenied:
        return 0.0


def _hidden(pid: int) -> bool:
    """Whether a PID that /proc does not show exists all the same (/proc mounted with hidepid: other
    users' processes are invisible there, not to the kernel's kill(pid, 0))."""
    if os.name != "posix":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: a process we may not signal
        return True
    return True


def my_token() -> OwnerToken:
    """A fresh token for this process."""
    pid = os.getpid()
    start = process_start(pid) or 0.0
    return OwnerToken(socket.gethostname(), pid, round(start, 2), pid_space(), uuid.uuid4().hex[:8])


def parse_token(text: str) -> OwnerToken | None:
    """The token in an owner tag, or None for a text no version of the project writes."""
    m = _TOKEN.fullmatch(text)
    if m is None:
        return None
    start = m["start"]
    return OwnerToken(m["host"], int(m["pid"]), float(start) if start else None, m["space"], m["nonce"])


def same_pid_space(token: OwnerToken) -> bool:
    """Whether the token's PID names a process of our own process table (old tokens: same host)."""
    if token.host != socket.gethostname():
        return False
    return token.space is None or token.space == pid_space()


def dead_here(token: OwnerToken, last_beat: float) -> str | None:
    """Why the owner, a process of our own PID space, is certainly dead (one phrase), or None when a
    process that may be it still runs. A process that started after the owner's start or last heartbeat
    cannot be the owner: the owner was alive then, and a PID is never held by two processes at once."""
    started = process_start(token.pid)
    if started is None:
        return f"its process {token.pid} no longer exists"
    known_alive = max(token.start or 0.0, last_beat)
    if started and known_alive and started > known_alive + START_SLACK_S:
        return f"PID {token.pid} now belongs to another process (started later)"
    return None
