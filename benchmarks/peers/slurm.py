"""Slurm 22.05 from Debian's packages as a one-node peer on localhost, for side-by-side benchmarks.

:class:`Slurm` installs ``slurm-wlm`` and ``munge`` with ``apt-get`` when they are missing (it
must run as root), writes a ``slurm.conf`` into a temporary directory (state, spool, logs and
PID files in there too, free ports), starts ``munged`` (unless one already answers),
``slurmctld -D -c`` and ``slurmd -D -N localhost`` as its own children, waits for the node to be
idle, and on exit — also after an error — cancels every job it can, then stops the daemons it
started by PID. Client commands get ``SLURM_CONF`` in their environment (:attr:`Slurm.env`).

The node is CPU-only (Slurm refuses ``Gres=gpu`` without device files); what is compared is the
submission and dispatch path. How this was worked out: ``shared/peers/slurm/README.md``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

PACKAGES = ("slurm-wlm", "munge")
COMMANDS = ("sbatch", "squeue", "scancel", "sinfo", "slurmctld", "slurmd", "munged", "munge", "unmunge")
MUNGE_SOCKET_DIR = Path("/run/munge")
MUNGE_KEY = Path("/etc/munge/munge.key")

CONF = """\
ClusterName=peer
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
{scheduler_parameters}AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
MaxJobCount=200000
MaxArraySize=100001
ReturnToService=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} Boards=1 SocketsPerBoard=1 CoresPerSocket={cpus} ThreadsPerCore=1 RealMemory={mem_mib} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""  # noqa: E501


class SlurmError(RuntimeError):
    pass


def ensure_installed() -> bool:
    """Install Slurm and munge with apt-get unless every command is there; True if it installed."""
    if all(shutil.which(c) for c in COMMANDS):
        return False
    if os.geteuid() != 0:
        raise SlurmError("Slurm is not installed and installing it needs root (apt-get); run as root or --no-slurm")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    missing = [c for c in COMMANDS if not shutil.which(c)]
    if missing:
        raise SlurmError(f"apt-get installed {PACKAGES} but {missing} are still missing")
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mem_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024 - 512  # what slurmd finds, less a margin: never INVAL
    return 1024


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU time of a live process (``/proc/<pid>/stat``), 0 when it is gone; with
    ``children``, that of its children it has waited for instead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    first = 13 if children else 11
    return (int(fields[first]) + int(fields[first + 1])) / os.sysconf("SC_CLK_TCK")


class Slurm:
    """A running one-node Slurm (a context manager). ``batch_sched_delay``: None keeps Slurm's
    default (3 s), a number sets ``SchedulerParameters=batch_sched_delay=N``."""

    def __init__(self, *, batch_sched_delay: int | None = None, cpus: int | None = None) -> None:
        self.batch_sched_delay = batch_sched_delay
        self.cpus = cpus or os.cpu_count() or 2
        self.installed_now = False
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.root = Path()
        self.env: dict[str, str] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[Any] = []

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Slurm:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        self.installed_now = ensure_installed()
        self._tmp = tempfile.TemporaryDirectory(prefix="kumo-bench-slurm-")
        self.root = Path(self._tmp.name)
        for sub in ("state", "spool", "work"):
            (self.root / sub).mkdir()
        delay = self.batch_sched_delay
        params = "" if delay is None else f"SchedulerParameters=batch_sched_delay={delay}\n"
        conf = self.root / "slurm.conf"
        conf.write_text(CONF.format(root=self.root, ctld_port=_free_port(), slurmd_port=_free_port(), cpus=self.cpus,
                                    mem_mib=_mem_mib(), scheduler_parameters=params))
        self.env = {**os.environ, "SLURM_CONF": str(conf), "LC_ALL": "C"}
        self._start_munge()
        self._spawn("slurmctld", ["slurmctld", "-D", "-c", "-f", str(conf)])
        self._spawn("slurmd", ["slurmd", "-D", "-N", "localhost", "-f", str(conf)])
        self._wait_idle()

    def _start_munge(self) -> None:
        if self._munge_ok():
            return  # a munged already answers (not ours: left alone)
        if not MUNGE_KEY.exists():
            subprocess.run(["mungekey", "--create", "--keyfile", str(MUNGE_KEY)], check=True)
            shutil.chown(MUNGE_KEY, "munge", "munge")
            MUNGE_KEY.chmod(0o600)
        for d in (MUNGE_SOCKET_DIR, Path("/var/log/munge"), Path("/var/lib/munge")):
            d.mkdir(parents=True, exist_ok=True)
            shutil.chown(d, "munge", "munge")
        self._spawn("munged", ["setpriv", "--reuid", "munge", "--regid", "munge", "--init-groups",
                               "munged", "--foreground"])
        self._wait("munge to answer", self._munge_ok, 20)

    def _munge_ok(self) -> bool:
        if not shutil.which("munge"):
            return False
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=5)
            if cred.returncode == 0:
                return subprocess.run(["unmunge"], input=cred.stdout, capture_output=True, timeout=5).returncode == 0
        return False

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.root / f"{name}.out", "wb")  # noqa: SIM115 (closed in stop())
        self._logs.append(log)
        self._procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                             start_new_session=True, cwd=self.root)

    def _wait_idle(self) -> None:
        def idle() -> bool:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise SlurmError(f"{name} exited ({proc.returncode}): {self.tail(name)}")
            r = self.run(["sinfo", "-h", "-n", "localhost", "-o", "%T"], check=False)
            return r.returncode == 0 and r.stdout.strip() == "idle"

        self._wait("the Slurm node to be idle", idle, 60)

    @staticmethod
    def _wait(what: str, probe: Any, timeout_s: float, interval_s: float = 0.2) -> None:
        deadline = time.monotonic() + timeout_s
        while not probe():
            if time.monotonic() > deadline:
                raise SlurmError(f"timed out after {timeout_s:g} s waiting for {what}")
            time.sleep(interval_s)

    def tail(self, name: str, lines: int = 20) -> str:
        out = []
        for f in (self.root / f"{name}.out", self.root / f"{name}.log"):
            if f.exists():
                out += f.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(out)

    def stop(self) -> None:
        """Cancel what is left, then stop the daemons this object started, by PID."""
        if "slurmctld" in self._procs and self._procs["slurmctld"].poll() is None:
            with contextlib.suppress(Exception):
                self.drain(timeout_s=60)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self._procs.pop(name, None)
            if proc is None:
                continue
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    proc.wait(5)
        for log in self._logs:
            log.close()
        self._logs.clear()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()
            self._tmp = None

    # ------------------------------------------------------------------ use
    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self._procs.items() if name != "munged"}

    def daemon_cpu_s(self) -> float:
        """CPU seconds slurmctld and slurmd have used so far."""
        return sum(cpu_seconds(pid) for pid in self.pids.values())

    def run(self, argv: list[str], *, check: bool = True, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(argv, capture_output=True, text=True, env=self.env, cwd=self.root / "work",
                           timeout=timeout_s)
        if check and r.returncode != 0:
            raise SlurmError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
        return r

    def version(self) -> str:
        """``slurm-wlm 22.05.8`` (the client commands need the configuration even for this)."""
        return self.run(["sbatch", "--version"]).stdout.strip()

    def sbatch(self, *args: str) -> str:
        """Submit; the job id (``--parsable``)."""
        out = self.run(["sbatch", "--parsable", "-o", "/dev/null", *args]).stdout.strip()
        return out.split(";")[0]

    def state(self, job_id: str) -> str:
        return self.run(["squeue", "-h", "-j", job_id, "-o", "%T"], check=False).stdout.strip()

    def queued(self) -> int:
        return len(self.run(["squeue", "-h", "-o", "%i"], check=False).stdout.split())

    def drain(self, timeout_s: float = 300) -> float:
        """Cancel every job and wait until the queue is empty; the seconds it took."""
        t0 = time.monotonic()
        self.run(["scancel", "--user", "root"], check=False)
        self._wait("Slurm's queue to empty", lambda: self.queued() == 0, timeout_s, 0.25)
        return time.monotonic() - t0
