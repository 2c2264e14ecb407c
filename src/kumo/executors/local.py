"""The local executor: every worker of a gang is a process on this machine, in its own process group.

``poll()`` does all the work (reaping, gang failure, walltime, SIGKILL after a grace), so there
are no threads. Each attempt has a state file ``<state_dir>/<job>.<attempt>.json`` naming its
workers' pids and process groups, written when it starts and removed when ``poll()`` reports its
end, so that a restarted controller can ``recover()`` the attempts still running and ``adopt()``
them (and ``stop()`` the ones it does not want). See ``docs/concepts/executors.md``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from kumo.core.model import WorkerPlacement
from kumo.executors.base import (
    EventKind,
    ExecutorError,
    ExecutorEvent,
    LaunchSpec,
    RecoveredAttempt,
    RecoveredWorker,
    describe_exit,
    file_key,
    follow,
    gang_env,
    log_path,
)
from kumo.executors.gpus import GpuInventory

_log = logging.getLogger(__name__)
STATE_VERSION = 1


@dataclass(slots=True)
class _Worker:
    rank: int
    node: str
    pid: int
    start_ticks: str | None
    proc: subprocess.Popen[bytes] | None  # None: adopted, not our child
    exit_code: int | None = None
    exited: bool = False


@dataclass(slots=True)
class _Attempt:
    job_id: str
    attempt: int
    workers: list[_Worker]
    log_dir: Path
    walltime_limit_s: float | None
    started_at: float  # executor clock
    started_unix: float
    state_file: Path
    adopted: bool = False
    ending: EventKind | None = None  # why it is being brought down
    message: str = ""
    failed_code: int | None = None
    kill_at: float | None = None

    @property
    def world(self) -> int:
        return len(self.workers)


class LocalExecutor:
    """Runs gangs as local processes. ``grace_s``: SIGTERM-to-SIGKILL delay on walltime and gang
    failure. Children inherit ``base_env`` (default: this process's environment)."""

    def __init__(
        self,
        state_dir: Path,
        inventory: GpuInventory,
        clock: Callable[[], float] = time.monotonic,
        *,
        grace_s: float = 10.0,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        self._state_dir = _make_dir(Path(state_dir).absolute(), "state")
        self._inventory = inventory
        self._clock = clock
        self._grace_s = grace_s
        self._base_env = base_env
        self._attempts: dict[str, _Attempt] = {}
        self._events: list[ExecutorEvent] = []
        self._known: dict[tuple[str, int], tuple[Path, int]] = {}  # log dir and world size

    # -- the protocol -------------------------------------------------------------------------

    def launch(self, spec: LaunchSpec) -> None:
        if spec.job_id in self._attempts:
            running = self._attempts[spec.job_id].attempt
            raise ExecutorError(f"job {spec.job_id!r} attempt {running} is still running")
        envs = gang_env(spec, self._inventory, _free_port(), os.environ if self._base_env is None else self._base_env)
        log_dir = _make_dir(Path(spec.log_dir).absolute(), "log")  # absolute: the state file outlives our cwd
        now = self._clock()
        self._known[(spec.job_id, spec.attempt)] = (log_dir, len(envs))
        try:
            workers = _spawn_gang(spec, envs)
        except _LaunchFailed as e:
            self._events.append(ExecutorEvent(spec.job_id, spec.attempt, EventKind.FAILED, now, e.code, e.message))
            return
        att = _Attempt(
            spec.job_id, spec.attempt, workers, log_dir, spec.walltime_limit_s, now, time.time(),
            self._state_dir / f"{file_key(spec.job_id)}.{spec.attempt}.json",
        )
        try:
            _write_state(att)
        except OSError as e:
            _kill_now(workers)
            raise ExecutorError(f"cannot write the state file {att.state_file}: {e.strerror or e}") from e
        self._attempts[spec.job_id] = att
        pids = ",".join(str(w.pid) for w in workers)
        self._events.append(ExecutorEvent(spec.job_id, spec.attempt, EventKind.STARTED, now, None, f"pids {pids}"))

    def stop(self, job_id: str, reason: str, grace_s: float) -> None:
        att = self._attempts.get(job_id)
        if att is None:
            return  # already ended: poll() has reported it or will
        now = self._clock()
        if att.ending is None:
            att.ending, att.message = EventKind.STOPPED, f"stopped: {reason}"
        self._bring_down(att, now, grace_s)

    def poll(self) -> list[ExecutorEvent]:
        now = self._clock()
        for att in list(self._attempts.values()):
            self._advance(att, now)
        events, self._events = self._events, []
        return events

    def running(self) -> dict[str, int]:
        return {job: att.attempt for job, att in self._attempts.items()}

    def logs(self, job_id: str, attempt: int, rank: int) -> Path:
        known = self._known.get((job_id, attempt))
        if known is None:
            raise ExecutorError(f"no attempt {attempt} of job {job_id!r} is known to this executor")
        if not 0 <= rank < known[1]:
            raise ExecutorError(f"job {job_id!r} attempt {attempt} has no rank {rank} (world size {known[1]})")
        return log_path(known[0], job_id, attempt, rank)

    # -- beyond the protocol --------------------------------------------------------------------

    def follow(
        self, job_id: str, attempt: int, rank: int, *, interval_s: float = 0.05, timeout_s: float | None = None
    ) -> Iterator[str]:
        """The lines of one worker's log as they come, until every worker of the attempt exited."""
        path = self.logs(job_id, attempt, rank)
        return follow(path, lambda: not self._live(job_id, attempt), interval_s=interval_s, timeout_s=timeout_s)

    def recover(self) -> list[RecoveredAttempt]:
        """Attempts named by state files in ``state_dir`` that this executor does not track
        (left by an earlier controller), with whether each worker process still lives."""
        tracked = {(a.job_id, a.attempt) for a in self._attempts.values()}
        found = [_read_state(p) for p in sorted(self._state_dir.glob("*.json"))]
        return [r for r in found if r is not None and (r.job_id, r.attempt) not in tracked]

    def adopt(self, recovered: RecoveredAttempt) -> None:
        """Track a recovered attempt: ``poll()`` enforces its walltime and reports its end as
        ``lost`` (exit status unknown: the processes are not our children) unless it was stopped."""
        if recovered.job_id in self._attempts:
            raise ExecutorError(f"job {recovered.job_id!r} already has a running attempt")
        workers = [
            _Worker(w.rank, w.node, w.pid, w.start_ticks, None, exited=not _alive(w.pid, w.start_ticks))
            for w in recovered.workers
        ]
        elapsed = max(0.0, time.time() - recovered.started_unix)
        att = _Attempt(
            recovered.job_id, recovered.attempt, workers, recovered.log_dir, recovered.walltime_limit_s,
            self._clock() - elapsed, recovered.started_unix, recovered.state_file, adopted=True,
        )
        self._attempts[att.job_id] = att
        self._known[(att.job_id, att.attempt)] = (att.log_dir, att.world)

    def shutdown(self, grace_s: float = 5.0) -> list[ExecutorEvent]:
        """Stop every attempt now (SIGTERM, SIGKILL after ``grace_s`` real seconds), wait for the
        processes and return the remaining events. A controller whose jobs should survive its
        restart does not call this."""
        for att in self._attempts.values():
            if att.ending is None:
                att.ending, att.message = EventKind.STOPPED, "stopped: executor shut down"
            _signal(att, signal.SIGTERM)
        self._wait_exits(grace_s)
        for att in self._attempts.values():
            _signal(att, signal.SIGKILL)
            att.kill_at = None
        self._wait_exits(5.0)
        return self.poll()

    # -- polling --------------------------------------------------------------------------------

    def _advance(self, att: _Attempt, now: float) -> None:
        _reap(att)
        if att.ending is None:
            self._check_failure(att, now)
        if att.ending is None and att.walltime_limit_s is not None and now - att.started_at > att.walltime_limit_s:
            att.ending = EventKind.WALLTIME
            att.message = f"ran past its walltime limit of {att.walltime_limit_s:g}s"
            self._bring_down(att, now, self._grace_s)
        if att.kill_at is not None and now >= att.kill_at:
            _signal(att, signal.SIGKILL)
            att.kill_at = None
        if all(w.exited for w in att.workers):
            self._finish(att, now)

    def _check_failure(self, att: _Attempt, now: float) -> None:
        failed = [w for w in att.workers if w.exited and w.exit_code not in (None, 0)]
        if failed:
            first = min(failed, key=lambda w: w.rank)
            att.ending, att.failed_code = EventKind.FAILED, first.exit_code
            att.message = f"rank {first.rank} {describe_exit(first.exit_code)}"
            self._bring_down(att, now, self._grace_s)

    def _bring_down(self, att: _Attempt, now: float, grace_s: float) -> None:
        _signal(att, signal.SIGTERM)
        deadline = now + max(0.0, grace_s)
        att.kill_at = deadline if att.kill_at is None else min(att.kill_at, deadline)
        if now >= att.kill_at:
            _signal(att, signal.SIGKILL)
            att.kill_at = None

    def _finish(self, att: _Attempt, now: float) -> None:
        codes = tuple(w.exit_code for w in att.workers)
        kind = att.ending or (EventKind.LOST if att.adopted else EventKind.SUCCEEDED)
        code: int | None = None
        message = att.message
        if kind is EventKind.SUCCEEDED:
            code, message = 0, f"all {att.world} workers exited 0"
        elif kind is EventKind.FAILED:
            code = att.failed_code
        elif kind is not EventKind.LOST and not att.adopted:
            code = next((c for c in codes if c), 0)
        if kind is EventKind.LOST:
            message = "exit status unknown: the processes were adopted after a restart and have ended"
        if not att.adopted:
            _signal(att, signal.SIGKILL, strays=True)  # whatever a worker left in its group
        att.state_file.unlink(missing_ok=True)
        del self._attempts[att.job_id]
        self._events.append(ExecutorEvent(att.job_id, att.attempt, kind, now, code, message, codes))

    def _live(self, job_id: str, attempt: int) -> bool:
        att = self._attempts.get(job_id)
        if att is None or att.attempt != attempt:
            return False
        _reap(att)
        return not all(w.exited for w in att.workers)

    def _wait_exits(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while any(self._live(a.job_id, a.attempt) for a in list(self._attempts.values())):
            if time.monotonic() >= deadline:
                return
            time.sleep(0.01)


class _LaunchFailed(Exception):
    """A worker could not be started; ``code`` follows the shell (127: not found, 126: cannot run)."""

    def __init__(self, code: int, message: str) -> None:
        self.code, self.message = code, message
        super().__init__(message)


def _launch_failure(error: OSError, program: str) -> _LaunchFailed:
    if isinstance(error, FileNotFoundError):
        return _LaunchFailed(127, f"command not found: {program}")
    if isinstance(error, PermissionError):
        return _LaunchFailed(126, f"permission denied: {program}")
    return _LaunchFailed(126, f"cannot start {program}: {error.strerror or error}")


# -- processes ------------------------------------------------------------------------------------


def _spawn_gang(spec: LaunchSpec, envs: dict[int, dict[str, str]]) -> list[_Worker]:
    """Start every worker, by rank; if one cannot start, kill and reap those already started."""
    started: list[_Worker] = []
    try:
        for w in sorted(spec.placement.workers, key=lambda w: w.rank):
            started.append(_spawn(spec, envs[w.rank], w))
    except BaseException:
        _kill_now(started)
        raise
    return started


def _spawn(spec: LaunchSpec, env: dict[str, str], w: WorkerPlacement) -> _Worker:
    path = log_path(spec.log_dir, spec.job_id, spec.attempt, w.rank)
    try:
        out = path.open("wb")
    except OSError as e:
        raise ExecutorError(f"cannot write the log {path}: {e.strerror or e}") from e
    with out:
        try:
            if spec.workdir is not None and not Path(spec.workdir).is_dir():
                raise _LaunchFailed(126, f"workdir not found: {spec.workdir}")
            proc = subprocess.Popen(
                spec.command, cwd=spec.workdir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        except (OSError, _LaunchFailed) as e:
            failure = e if isinstance(e, _LaunchFailed) else _launch_failure(e, spec.command[0])
            out.write(f"kumo: {failure.message}\n".encode())
            raise failure from None
    stat = _proc_stat(proc.pid)
    return _Worker(w.rank, w.node, proc.pid, stat and stat[1], proc)


def _kill_now(workers: list[_Worker]) -> None:
    for w in workers:
        _killpg(w.pid, signal.SIGKILL)
        if w.proc is not None:
            w.proc.wait(timeout=5)


def _make_dir(path: Path, what: str) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExecutorError(f"cannot create the {what} directory {path}: {e.strerror or e}") from e
    return path


def _reap(att: _Attempt) -> None:
    for w in att.workers:
        if w.exited:
            continue
        if w.proc is not None:
            code = w.proc.poll()
            if code is not None:
                w.exited, w.exit_code = True, code
        elif not _alive(w.pid, w.start_ticks):
            w.exited = True


def _signal(att: _Attempt, sig: signal.Signals, *, strays: bool = False) -> None:
    """Signal the process group of every worker still running (``strays``: of every worker)."""
    for w in att.workers:
        if (strays or not w.exited) and (w.proc is not None or _alive(w.pid, w.start_ticks)):
            _killpg(w.pid, sig)


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        port: int = s.getsockname()[1]
        return port


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) from ``/proc/<pid>/stat``; None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], fields[19]


def _alive(pid: int, start_ticks: str | None) -> bool:
    """Whether ``pid`` is still the process that was started (a reused pid is not; nor a zombie)."""
    if not Path("/proc/self/stat").exists():  # not Linux: trust the pid
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True  # also on PermissionError: it exists
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X") and start_ticks in (None, stat[1])


# -- state files --------------------------------------------------------------------------------


def _write_state(att: _Attempt) -> None:
    state = {
        "version": STATE_VERSION,
        "job_id": att.job_id,
        "attempt": att.attempt,
        "started_unix": att.started_unix,
        "walltime_limit_s": att.walltime_limit_s,
        "log_dir": str(att.log_dir),
        "workers": [
            {"rank": w.rank, "node": w.node, "pid": w.pid, "pgid": w.pid, "start_ticks": w.start_ticks}
            for w in att.workers
        ],
    }
    tmp = att.state_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
    os.replace(tmp, att.state_file)


def _read_state(path: Path) -> RecoveredAttempt | None:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        if state["version"] != STATE_VERSION:
            raise ValueError(f"version {state['version']!r}, expected {STATE_VERSION}")
        workers = tuple(
            RecoveredWorker(
                int(w["rank"]), str(w["node"]), int(w["pid"]), int(w["pgid"]), w["start_ticks"],
                _alive(int(w["pid"]), w["start_ticks"]),
            )
            for w in state["workers"]
        )
        return RecoveredAttempt(
            str(state["job_id"]), int(state["attempt"]), workers, Path(state["log_dir"]),
            float(state["started_unix"]), state["walltime_limit_s"], path,
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        _log.warning("skipping %s: not a kumo executor state file (%s)", path, e)
        return None
