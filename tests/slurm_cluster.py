"""A one-node Slurm cluster on this machine for a test: munged on its own socket and key, slurmctld and
slurmd in the foreground with a slurm.conf written here (127.0.0.1 only, proctrack/linuxproc, task/none,
this host as the only node with its real CPUs and memory), all in one temporary folder. Every wait is
bounded and `stop` ends every daemon and job it started."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("munge", "sbatch", "scontrol", "squeue", "scancel", "sinfo", "srun")
# Requeue quickly: a requeued job waits cred_expire + 1 s before it may start (120 s by default), and
# the scheduler looks at pending jobs every sched_interval (60 s by default). KillWait: the grace between
# a job's SIGTERM and its SIGKILL (a scheduler's own default is 30 s).
CONF = """\
ClusterName=seqtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser={user}
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.sock,cred_expire=5
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=20
MinJobAge=600
JobRequeue=1
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


class SlurmUnavailable(RuntimeError):
    """Slurm or munge is not installed, or would not start here."""


def missing_programs() -> list[str]:
    return [p for p in (*DAEMONS, *CLIENTS) if shutil.which(p) is None]


@dataclass
class SlurmCluster:
    root: Path
    env: dict[str, str]
    procs: list[subprocess.Popen] = field(default_factory=list)

    def run(self, *args: str, timeout: float = 30, check: bool = True) -> str:
        done = subprocess.run(
            args, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def job_state(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as key=value pairs (JobState, Restarts, ...)."""
        text = self.run("scontrol", "-o", "show", "job", job_id)
        return dict(re.findall(r"(\w+)=(\S*)", text))

    def logs(self) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log", "munge/munged.log"):
            with contextlib.suppress(OSError):
                parts.append(f"--- {name}\n" + (self.root / name).read_text()[-3000:])
        return "\n".join(parts)


def _user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_resources() -> tuple[int, int]:
    """This host's CPUs and memory (MB) as slurmd sees them (`slurmd -C`)."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30, check=True).stdout
    cpus, memory = re.search(r"CPUs=(\d+)", out), re.search(r"RealMemory=(\d+)", out)
    if not (cpus and memory):
        raise SlurmUnavailable(f"slurmd -C said: {out.strip()}")
    return int(cpus.group(1)), int(memory.group(1))


def _wait(predicate, what: str, timeout: float, cluster: SlurmCluster | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for proc in cluster.procs if cluster else []:
            if proc.poll() is not None:
                raise SlurmUnavailable(
                    f"{proc.args[0]} exited ({proc.returncode}) before {what}:\n{cluster.logs()}"
                )
        if time.monotonic() > deadline:
            raise SlurmUnavailable(
                f"no {what} within {timeout:.0f} s" + (f":\n{cluster.logs()}" if cluster else "")
            )
        time.sleep(0.2)


@contextlib.contextmanager
def slurm_cluster(env: dict[str, str]) -> Iterator[SlurmCluster]:
    """Start the cluster (raises SlurmUnavailable with the daemons' logs), yield it, stop it."""
    missing = missing_programs()
    if missing:
        raise SlurmUnavailable(f"not installed: {', '.join(missing)} (apt-get install -y slurm-wlm munge)")
    root = Path(tempfile.mkdtemp(prefix="slurm-"))  # short: the munge socket path has a length limit
    for sub in ("state", "spool", "munge"):
        (root / sub).mkdir(mode=0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    host = socket.gethostname().split(".")[0]
    cpus, memory = _node_resources()
    conf = root / "slurm.conf"
    conf.write_text(
        CONF.format(
            host=host, ctld_port=_free_port(), slurmd_port=_free_port(), user=_user(),
            root=root, cpus=cpus, memory=memory,
        )
    )  # fmt: skip
    cluster = SlurmCluster(root, {**env, "SLURM_CONF": str(conf)})
    try:
        cluster.procs.append(_daemon(cluster, [
            "munged", "-F", "--force", "-S", f"{root}/munge/munge.sock", f"--key-file={key}",
            f"--log-file={root}/munge/munged.log", f"--pid-file={root}/munge/munged.pid",
            f"--seed-file={root}/munge/munged.seed",
        ]))  # fmt: skip
        _wait(lambda: (root / "munge" / "munge.sock").exists(), "munge socket", 30, cluster)
        cluster.procs.append(_daemon(cluster, ["slurmctld", "-D", "-i", "-f", str(conf)]))
        cluster.procs.append(_daemon(cluster, ["slurmd", "-D", "-f", str(conf)]))
        _wait(lambda: _idle(cluster), "idle node", 60, cluster)
        yield cluster
    finally:
        _stop(cluster)
        shutil.rmtree(root, ignore_errors=True)


def _daemon(cluster: SlurmCluster, args: list[str]) -> subprocess.Popen:
    out = open(cluster.root / f"{args[0]}.out", "w")  # noqa: SIM115 - kept open for the daemon's life
    return subprocess.Popen(
        args, env=cluster.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def _idle(cluster: SlurmCluster) -> bool:
    try:
        return cluster.run("sinfo", "-h", "-o", "%T", timeout=10, check=False).strip() == "idle"
    except subprocess.TimeoutExpired:
        return False


def _stop(cluster: SlurmCluster) -> None:
    """Cancel every job and wait (bounded) for their processes to end, then stop the daemons, newest
    first: SIGTERM, then SIGKILL after 10 s."""
    alive = [p for p in cluster.procs if p.poll() is None]
    if len(alive) == len(DAEMONS):
        with contextlib.suppress(Exception):
            cluster.run("scancel", "--full", "--user", _user(), timeout=10, check=False)
            _wait(
                lambda: not cluster.run("squeue", "-h", "-t", "R,CG", timeout=10).strip(), "empty queue", 40
            )
    for proc in reversed(cluster.procs):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
