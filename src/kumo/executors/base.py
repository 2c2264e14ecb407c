"""The executor protocol: how a shell runs a started gang and learns what became of it.

An executor runs what the core decided (a :class:`~kumo.core.Placement`); it decides nothing.
The control loop calls :meth:`Executor.launch` and :meth:`Executor.stop`, and calls
:meth:`Executor.poll` regularly to learn what happened since the last call. Expected outcomes
(a worker exited 3, a command does not exist) are :class:`ExecutorEvent` values; exceptions are
for misuse (launching a job twice, a node the inventory does not know)::

    KumoError
     └── ExecutorError    an executor was asked something it cannot do
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable
from urllib.parse import quote

from kumo.core.errors import InvalidValueError, KumoError
from kumo.core.model import Placement, WorkerPlacement
from kumo.core.resources import check_name

if TYPE_CHECKING:
    from kumo.executors.gpus import GpuInventory


class ExecutorError(KumoError):
    """An executor was asked something it cannot do: the message says what and why."""


class EventKind(StrEnum):
    """What became of an attempt. Every kind but ``started`` ends the attempt."""

    STARTED = "started"
    SUCCEEDED = "succeeded"  # every worker exited 0
    FAILED = "failed"  # a worker exited non-zero or could not start; the others were stopped
    STOPPED = "stopped"  # after a stop request (cancel or preemption)
    WALLTIME = "walltime"  # killed for running past walltime_limit_s
    LOST = "lost"  # the workers are gone (a lost node, say) and the job may run again

    @property
    def terminal(self) -> bool:
        return self is not EventKind.STARTED


@dataclass(frozen=True, slots=True)
class ExecutorEvent:
    """One thing that happened to attempt ``attempt`` of ``job_id`` at ``at`` (executor clock).

    ``exit_code``: ``None`` for ``started`` and ``lost``; ``0`` for ``succeeded``; for ``failed``
    the failing worker's code; for ``stopped`` and ``walltime`` the first non-zero code by rank,
    else 0. A negative code ``-N`` means killed by signal N; 127 means command not found and 126
    permission denied. ``exit_codes`` holds every worker's code by rank (``None``: unknown; empty
    when the attempt never started)."""

    job_id: str
    attempt: int
    kind: EventKind
    at: float
    exit_code: int | None = None
    message: str = ""
    exit_codes: tuple[int | None, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class LaunchSpec:
    """What to run for one attempt of a job, and where (``placement``, from a core ``Start``).

    Every worker runs ``command`` with ``env`` (plus the variables the executor adds) in
    ``workdir`` (``None``: the executor's own working directory). ``walltime_limit_s`` is in wall
    seconds on the GPUs actually used: the shell converts the job's speed-1.0 limit first.
    """

    job_id: str
    attempt: int
    placement: Placement
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    workdir: Path | None = None
    walltime_limit_s: float | None = None
    log_dir: Path

    def __post_init__(self) -> None:
        where = f"launch of job {self.job_id!r}"
        check_name(where, self.job_id)
        if not isinstance(self.attempt, int) or self.attempt < 0:
            raise InvalidValueError(where, f"attempt must be an integer >= 0, got {self.attempt!r}")
        if not self.command or not all(isinstance(a, str) and "\0" not in a for a in self.command):
            raise InvalidValueError(where, f"command must be a non-empty list of strings, got {self.command!r}")
        if not self.placement.workers:
            raise InvalidValueError(where, "placement has no workers")
        if sorted(w.rank for w in self.placement.workers) != list(range(len(self.placement.workers))):
            raise InvalidValueError(where, "worker ranks must be 0..n-1, each once")
        if self.walltime_limit_s is not None and not self.walltime_limit_s > 0:
            raise InvalidValueError(where, f"walltime_limit_s must be > 0, got {self.walltime_limit_s!r}")
        bad = [k for k, v in self.env.items() if not k or "=" in k or not isinstance(v, str) or "\0" in k + v]
        if bad:
            raise InvalidValueError(where, f"env names must be non-empty without '=', values strings: {bad!r}")


@dataclass(frozen=True, slots=True)
class RecoveredWorker:
    """A worker process named by a state file; ``alive`` when it was looked at; ``exit_code`` as
    recorded by its keeper once it ended (None: still running, or unknown)."""

    rank: int
    node: str
    pid: int
    pgid: int
    start_ticks: str | None
    alive: bool
    exit_code: int | None = None


@dataclass(frozen=True, slots=True)
class RecoveredAttempt:
    """An attempt a restarted controller found still recorded (the local executor: in its state
    files): adopt it, or adopt and stop it."""

    job_id: str
    attempt: int
    workers: tuple[RecoveredWorker, ...]
    log_dir: Path
    started_unix: float
    walltime_limit_s: float | None
    state_file: Path

    @property
    def alive(self) -> bool:
        return any(w.alive for w in self.workers)

    @property
    def outcome_known(self) -> bool:
        """Every worker has ended with a recorded exit code: adopting it reports its real outcome."""
        return not self.alive and all(w.exit_code is not None for w in self.workers)

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(w.pid for w in self.workers)


@runtime_checkable
class Executor(Protocol):
    """Runs gangs. One attempt per job at a time; ``poll`` is the only source of outcomes."""

    def launch(self, spec: LaunchSpec) -> None:
        """Start every worker of ``spec``. Raises :class:`ExecutorError` if the job is running."""
        ...

    def stop(self, job_id: str, reason: str, grace_s: float) -> None:
        """SIGTERM every worker's process group, SIGKILL after ``grace_s``. No-op if not running."""
        ...

    def poll(self) -> list[ExecutorEvent]:
        """What happened since the last call, oldest first. Never blocks."""
        ...

    def running(self) -> dict[str, int]:
        """``job_id -> attempt`` of every attempt whose terminal event ``poll`` has not returned."""
        ...

    def logs(self, job_id: str, attempt: int, rank: int) -> Path:
        """The log file of one worker of one attempt."""
        ...


def gang_env(
    spec: LaunchSpec, inventory: GpuInventory, master_port: int, base: Mapping[str, str]
) -> dict[int, dict[str, str]]:
    """Each rank's environment: ``base``, then ``spec.env``, then kumo's contract (which wins).

    Raises :class:`ExecutorError` when the inventory lacks a node or GPU of the placement, or
    holds another GPU model there.
    """
    placement = spec.placement
    for w in placement.workers:
        for i in w.gpus:
            model = inventory.device(w.node, i).model
            if model != placement.model:
                raise ExecutorError(
                    f"job {spec.job_id!r}: placed on {placement.model} GPUs, but GPU {i} of node {w.node!r}"
                    f" is a {model} in the inventory"
                )
    rank0 = next(w for w in placement.workers if w.rank == 0)
    env = dict(base) | spec.env
    env.setdefault("PYTHONUNBUFFERED", "1")  # so that logs can be followed as they are written
    env |= {
        "KUMO_JOB_ID": spec.job_id,
        "KUMO_ATTEMPT": str(spec.attempt),
        "WORLD_SIZE": str(len(placement.workers)),
        "MASTER_ADDR": inventory.address(rank0.node),
        "MASTER_PORT": str(master_port),
    }
    return {w.rank: env | _worker_env(placement, inventory, w) for w in placement.workers}


def _worker_env(placement: Placement, inventory: GpuInventory, w: WorkerPlacement) -> dict[str, str]:
    local = sorted(x.rank for x in placement.workers if x.node == w.node)
    return {
        "RANK": str(w.rank),
        "LOCAL_RANK": str(local.index(w.rank)),
        "LOCAL_WORLD_SIZE": str(len(local)),
        "NODE_RANK": str(placement.nodes.index(w.node)),
        "NODE_NAME": w.node,
        "CUDA_VISIBLE_DEVICES": inventory.visible_devices(w.node, w.gpus),
        "KUMO_GPU_MILLI": str(w.gpu_milli),
    }


def describe_exit(code: int | None) -> str:
    """``'exited with code 3'``, ``'was killed by SIGKILL'``."""
    if code is None:
        return "ended (exit status unknown)"
    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


def file_key(job_id: str) -> str:
    """``job_id`` as it appears in file names: '/' is percent-encoded (``team/a`` -> ``team%2Fa``)."""
    return quote(job_id, safe="._:-")


def log_path(log_dir: Path, job_id: str, attempt: int, rank: int) -> Path:
    """``<log_dir>/<job>.<attempt>.<rank>.log``: stdout and stderr of one worker."""
    return Path(log_dir) / f"{file_key(job_id)}.{attempt}.{rank}.log"


def known_log(known: Mapping[tuple[str, int], tuple[Path, int]], job_id: str, attempt: int, rank: int) -> Path:
    """The log file of one worker of an attempt an executor knows (``known``: ``(job, attempt) ->
    (log dir, world size)``); :class:`ExecutorError` for an unknown attempt or rank."""
    found = known.get((job_id, attempt))
    if found is None:
        raise ExecutorError(f"no attempt {attempt} of job {job_id!r} is known to this executor")
    if not 0 <= rank < found[1]:
        raise ExecutorError(f"job {job_id!r} attempt {attempt} has no rank {rank} (world size {found[1]})")
    return log_path(found[0], job_id, attempt, rank)


def wait_for(executor: Executor, job_id: str, *, timeout_s: float, interval_s: float = 0.01) -> list[ExecutorEvent]:
    """Poll until ``job_id``'s attempt ends; return every event polled meanwhile (all jobs).

    Raises :class:`ExecutorError` after ``timeout_s`` real seconds without the end.
    """
    deadline = time.monotonic() + timeout_s
    events: list[ExecutorEvent] = []
    while True:
        events.extend(executor.poll())
        if any(e.job_id == job_id and e.kind.terminal for e in events):
            return events
        if time.monotonic() >= deadline:
            raise ExecutorError(f"job {job_id!r} did not end within {timeout_s:g}s")
        time.sleep(interval_s)


def follow(
    path: Path,
    ended: Callable[[], bool],
    *,
    interval_s: float = 0.05,
    timeout_s: float | None = None,
    from_start: bool = True,
) -> Iterator[str]:
    """Yield the lines of ``path`` (without their newline) as it grows, like ``tail -f``.

    Stops once ``ended()`` is true and everything written before that has been yielded, or after
    ``timeout_s`` real seconds. A file that does not exist yet is waited for. ``from_start=False``
    skips what the file holds when ``follow`` is called.
    """
    offset = path.stat().st_size if not from_start and path.exists() else 0
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    return _follow(path, offset, ended, interval_s, deadline)


def _follow(
    path: Path, offset: int, ended: Callable[[], bool], interval_s: float, deadline: float | None
) -> Iterator[str]:
    partial = b""
    while True:
        finished = ended()  # read before the file, so nothing written before the end is missed
        chunk, offset = _read_from(path, offset)
        lines = (partial + chunk).split(b"\n")
        partial = lines.pop()
        for line in lines:
            yield line.decode("utf-8", errors="replace")
        if finished or (deadline is not None and time.monotonic() >= deadline):
            if partial:
                yield partial.decode("utf-8", errors="replace")
            return
        if not chunk:
            time.sleep(interval_s)


def _read_from(path: Path, offset: int) -> tuple[bytes, int]:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return b"", offset
    return data, offset + len(data)
