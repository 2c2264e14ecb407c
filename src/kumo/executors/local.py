"""The local executor: every worker of a gang is a process on this machine, in its own process group.

Each worker runs under a **keeper** (``_keeper.py``): a small Python process that leads the
worker's process group, starts the command as its child, and writes the command's exit code to
an exit file ``<state_dir>/<job>.<attempt>.<rank>.exit`` when it ends. ``poll()`` does all the
work (reaping, gang failure, walltime, the kill after a grace), so there are no threads. Each
attempt has a state file ``<state_dir>/<job>.<attempt>.json`` naming its keepers' pids (= process
groups) and exit files, written when it starts and removed (with the exit files) when ``poll()``
reports its end, so that a restarted controller can ``recover()`` the attempts still running,
``adopt()`` them and learn their exit codes from the exit files (and ``stop()`` the ones it does
not want). See ``docs/concepts/executors.md``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
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
    known_log,
    log_path,
)
from kumo.executors.gpus import GpuInventory

_log = logging.getLogger(__name__)
STATE_VERSION = 2  # 2: workers run under keepers and have exit files; 1 (still read): no keepers
KEEPER = Path(__file__).with_name("_keeper.py")
KEEPER_KILL_S = 2.0  # real seconds from SIGUSR1 to a keeper until its whole group gets SIGKILL
KEEPER_READY_S = 10.0  # real seconds a keeper has to say whether it started the command


@dataclass(slots=True)
class _Worker:
    rank: int
    node: str
    pid: int  # the keeper's, which is the process group id (a version-1 state file: the command's)
    start_ticks: str | None
    proc: subprocess.Popen[bytes] | None  # None: adopted, not our child
    exit_file: Path | None  # where the keeper writes the exit code; None: no keeper (version 1)
    command_pid: int | None = None  # the command's own pid, when known
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
    kill_at: float | None = None  # executor clock: the grace is over, SIGUSR1 to the keepers
    hard_kill_at: float | None = None  # time.monotonic(): keepers still there, SIGKILL their groups

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
        exit_files = {r: self._state_dir / f"{file_key(spec.job_id)}.{spec.attempt}.{r}.exit" for r in envs}
        try:
            workers = _spawn_gang(spec, envs, exit_files)
        except _LaunchFailed as e:
            _remove_exit_files(exit_files.values())
            self._events.append(ExecutorEvent(spec.job_id, spec.attempt, EventKind.FAILED, now, e.code, e.message))
            return
        except BaseException:
            _remove_exit_files(exit_files.values())
            raise
        att = _Attempt(
            spec.job_id, spec.attempt, workers, log_dir, spec.walltime_limit_s, now, time.time(),
            self._state_dir / f"{file_key(spec.job_id)}.{spec.attempt}.json",
        )
        try:
            _write_state(att)
        except OSError as e:
            _kill_now(workers)
            _remove_exit_files(exit_files.values())
            raise ExecutorError(f"cannot write the state file {att.state_file}: {e.strerror or e}") from e
        self._attempts[spec.job_id] = att
        pids = ",".join(str(w.command_pid) for w in workers)
        groups = ",".join(str(w.pid) for w in workers)
        self._events.append(ExecutorEvent(spec.job_id, spec.attempt, EventKind.STARTED, now, None,
                                          f"pids {pids} (process groups {groups})"))

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
        return known_log(self._known, job_id, attempt, rank)

    # -- beyond the protocol --------------------------------------------------------------------

    def follow(
        self, job_id: str, attempt: int, rank: int, *, interval_s: float = 0.05, timeout_s: float | None = None
    ) -> Iterator[str]:
        """The lines of one worker's log as they come, until every worker of the attempt exited."""
        path = self.logs(job_id, attempt, rank)
        return follow(path, lambda: not self._live(job_id, attempt), interval_s=interval_s, timeout_s=timeout_s)

    def recover(self) -> list[RecoveredAttempt]:
        """Attempts named by state files in ``state_dir`` that this executor does not track
        (left by an earlier controller), with whether each worker (its keeper) still lives."""
        tracked = {(a.job_id, a.attempt) for a in self._attempts.values()}
        found = [_read_state(p) for p in sorted(self._state_dir.glob("*.json"))]
        return [r[0] for r in found if r is not None and (r[0].job_id, r[0].attempt) not in tracked]

    def adopt(self, recovered: RecoveredAttempt) -> None:
        """Track a recovered attempt: ``poll()`` enforces its walltime and reports its end with the
        exit codes its keepers wrote to their exit files, as for an attempt it launched. Where an
        exit file is missing (a keeper killed hard; a version-1 state file: no keepers) the
        attempt ends ``failed`` with exit code None ("exit status unknown": it may have run to its
        end, so it must not run again), unless it was stopped or a worker failed."""
        if recovered.job_id in self._attempts:
            raise ExecutorError(f"job {recovered.job_id!r} already has a running attempt")
        state = _read_state(recovered.state_file)
        exit_files = state[1] if state is not None else {}
        workers = [
            _Worker(w.rank, w.node, w.pid, w.start_ticks, None, exit_files.get(w.rank)) for w in recovered.workers
        ]
        elapsed = max(0.0, time.time() - recovered.started_unix)
        att = _Attempt(
            recovered.job_id, recovered.attempt, workers, recovered.log_dir, recovered.walltime_limit_s,
            self._clock() - elapsed, recovered.started_unix, recovered.state_file, adopted=True,
        )
        _reap(att)  # those that have ended already, with their exit codes
        self._attempts[att.job_id] = att
        self._known[(att.job_id, att.attempt)] = (att.log_dir, att.world)

    def shutdown(self, grace_s: float = 5.0) -> list[ExecutorEvent]:
        """Stop every attempt now (SIGTERM; after ``grace_s`` real seconds SIGUSR1 to the keepers,
        which SIGKILL their groups; SIGKILL to the groups if a keeper is still there), wait for
        the processes and return the remaining events. A controller whose jobs should survive its
        restart does not call this."""
        for att in self._attempts.values():
            if att.ending is None:
                att.ending, att.message = EventKind.STOPPED, "stopped: executor shut down"
            _signal(att, signal.SIGTERM)
        self._wait_exits(grace_s)
        for att in self._attempts.values():
            _escalate(att)
            att.kill_at = None
        self._wait_exits(KEEPER_KILL_S)
        for att in self._attempts.values():
            _signal(att, signal.SIGKILL)
            att.hard_kill_at = None
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
            _escalate(att)
            att.kill_at = None
        if att.hard_kill_at is not None and time.monotonic() >= att.hard_kill_at:
            _signal(att, signal.SIGKILL)  # a keeper did not end in time: the last resort
            att.hard_kill_at = None
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
            _escalate(att)
            att.kill_at = None

    def _finish(self, att: _Attempt, now: float) -> None:
        codes = tuple(w.exit_code for w in att.workers)
        known = all(c is not None for c in codes)
        # An adopted attempt that ended without recording its exit status may have run to its end:
        # it fails (exit code None) rather than ends lost, so that it never runs a second time.
        kind = att.ending or (EventKind.SUCCEEDED if known else EventKind.FAILED if att.adopted else EventKind.LOST)
        code: int | None = None
        message = att.message
        if kind is EventKind.SUCCEEDED:
            code, message = 0, f"all {att.world} workers exited 0"
        elif not known and att.ending is None:
            message = ("exit status unknown: the processes were adopted after a restart and ended"
                       " without recording it" if att.adopted else "exit status unknown")
        elif kind is EventKind.FAILED:
            code = att.failed_code
        else:  # stopped, walltime: the first non-zero code by rank, else 0 (None: some are unknown)
            code = next((c for c in codes if c), 0 if known else None)
        if not att.adopted:
            _signal(att, signal.SIGKILL, strays=True)  # whatever a worker left in its group
        _remove_exit_files(w.exit_file for w in att.workers if w.exit_file is not None)
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


def _spawn_gang(spec: LaunchSpec, envs: dict[int, dict[str, str]], exit_files: dict[int, Path]) -> list[_Worker]:
    """Start every worker's keeper, by rank, then wait until each says it started its command; if
    one cannot start, kill and reap those already started."""
    started: list[tuple[_Worker, int]] = []
    try:
        for w in sorted(spec.placement.workers, key=lambda w: w.rank):
            started.append(_spawn(spec, envs[w.rank], w, exit_files[w.rank]))
        deadline = time.monotonic() + KEEPER_READY_S
        for worker, ready in started:
            _await_keeper(spec, worker, ready, deadline)
    except BaseException:
        _kill_now([w for w, _ in started])
        raise
    finally:
        for _, ready in started:
            with contextlib.suppress(OSError):
                os.close(ready)
    return [w for w, _ in started]


def _spawn(spec: LaunchSpec, env: dict[str, str], w: WorkerPlacement, exit_file: Path) -> tuple[_Worker, int]:
    """Start one worker's keeper; returns it and the pipe on which it says whether it started the command."""
    path = log_path(spec.log_dir, spec.job_id, spec.attempt, w.rank)
    try:
        out = path.open("wb")
    except OSError as e:
        raise ExecutorError(f"cannot write the log {path}: {e.strerror or e}") from e
    exit_file.unlink(missing_ok=True)  # an attempt's number is not reused, but be sure
    with out:
        try:
            if spec.workdir is not None and not Path(spec.workdir).is_dir():
                raise _LaunchFailed(126, f"workdir not found: {spec.workdir}")
            ready, answer = os.pipe()
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", str(KEEPER), "--ready-fd", str(answer), str(exit_file), "--",
                     *spec.command],
                    cwd=spec.workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True, pass_fds=(answer,),
                )
            except BaseException:
                os.close(ready)
                raise
            finally:
                os.close(answer)
        except (OSError, _LaunchFailed) as e:
            failure = e if isinstance(e, _LaunchFailed) else _launch_failure(e, sys.executable)
            out.write(f"kumo: {failure.message}\n".encode())
            raise failure from None
    stat = _proc_stat(proc.pid)
    return _Worker(w.rank, w.node, proc.pid, stat and stat[1], proc, exit_file), ready


def _await_keeper(spec: LaunchSpec, worker: _Worker, ready: int, deadline: float) -> None:
    """Read the keeper's answer: ``ok <pid>``, or ``<code> <message>`` if the command could not start."""
    assert worker.proc is not None
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([ready], [], [], left)[0]:
            message = f"cannot start {spec.command[0]}: its keeper did not answer within {KEEPER_READY_S:g}s"
            _append_log(spec, worker.rank, message)
            raise _LaunchFailed(126, message)
        chunk = os.read(ready, 4096)
        if not chunk:
            break
        data += chunk
    word, _, rest = data.decode(errors="replace").partition(" ")
    if word == "ok":
        worker.command_pid = int(rest)
        return
    worker.proc.wait(timeout=KEEPER_READY_S)
    if word.isdigit():
        raise _LaunchFailed(int(word), rest)  # the keeper wrote it to the log already
    message = f"cannot start {spec.command[0]}: its keeper {describe_exit(worker.proc.returncode)}"
    _append_log(spec, worker.rank, message)
    raise _LaunchFailed(126, message)


def _append_log(spec: LaunchSpec, rank: int, message: str) -> None:
    with contextlib.suppress(OSError), log_path(spec.log_dir, spec.job_id, spec.attempt, rank).open("ab") as f:
        f.write(f"kumo: {message}\n".encode())


def _kill_now(workers: list[_Worker]) -> None:
    """Kill just-started workers through their keepers (which reap them); SIGKILL what is left."""
    for w in workers:
        if w.proc is not None and w.proc.poll() is None:
            _kill(w.pid, signal.SIGUSR1)
    for w in workers:
        if w.proc is None:
            continue
        try:
            w.proc.wait(timeout=KEEPER_KILL_S)
        except subprocess.TimeoutExpired:
            _killpg(w.pid, signal.SIGKILL)
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
            code = w.proc.poll()  # the keeper ends as its command did
            if code is not None:
                w.exited, w.exit_code = True, code
        elif not _alive(w.pid, w.start_ticks):
            code = _read_exit_code(w.exit_file)
            if code is not None or w.exit_file is None or not _orphans(w.pid, w.start_ticks):
                w.exited, w.exit_code = True, code
            # else: its keeper was killed hard, but the command (or what it started) still runs


def _orphans(keeper: int, start_ticks: str | None) -> list[int]:
    """The live processes of the group of a keeper that was killed before it could record an exit
    code (its command, or what that started). The group is still the worker's while it has members
    and no other process took the keeper's pid (a group id is not reused while the group exists)."""
    stat = _proc_stat(keeper)
    if stat is not None and stat[1] != start_ticks:
        return []  # the pid is another process's now: the group we knew has ended
    return _group_members(keeper)


def _group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``, from ``/proc`` (none elsewhere)."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    found = []
    for name in names:
        if name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                text = Path(f"/proc/{name}/stat").read_text()
                fields = text[text.rindex(")") + 2 :].split()
                if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                    found.append(int(name))
    return found


def _signal(att: _Attempt, sig: signal.Signals, *, strays: bool = False) -> None:
    """Signal the process group of every worker still running (``strays``: of every worker)."""
    for w in att.workers:
        if (strays or not w.exited) and _signallable(w):
            _killpg(w.pid, sig)


def _signallable(w: _Worker) -> bool:
    """Whether ``w``'s process group is still the one we started (an adopted worker's pid may be reused)."""
    return w.proc is not None or _running(w.pid, w.start_ticks, keeper=w.exit_file is not None)


def _running(pid: int, start_ticks: str | None, *, keeper: bool) -> bool:
    """Whether a worker runs: its keeper (``pid``) lives, or was killed and left its command running."""
    return _alive(pid, start_ticks) or (keeper and bool(_orphans(pid, start_ticks)))


def _escalate(att: _Attempt) -> None:
    """The grace is over: SIGUSR1 to each keeper still running (it SIGKILLs its group and reaps its
    command), then SIGKILL to the groups if keepers are still there ``KEEPER_KILL_S`` later.
    A worker without a keeper (a version-1 state file) gets SIGKILL to its group at once."""
    for w in att.workers:
        if w.exited or not _signallable(w):
            continue
        if w.exit_file is None or (w.proc is None and not _alive(w.pid, w.start_ticks)):
            _killpg(w.pid, signal.SIGKILL)  # no keeper (a version-1 state file), or it was killed
        else:
            _kill(w.pid, signal.SIGUSR1)
            if att.hard_kill_at is None:
                att.hard_kill_at = time.monotonic() + KEEPER_KILL_S


def _kill(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


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


# -- state and exit files -------------------------------------------------------------------------


def _read_exit_code(path: Path | None) -> int | None:
    """The code a keeper wrote (``-N``: killed by signal N); None without a keeper or a file."""
    if path is None:
        return None
    try:
        return int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def _remove_exit_files(paths: Iterable[Path]) -> None:
    for path in paths:
        for p in (path, path.with_name(path.name + ".tmp")):
            with contextlib.suppress(OSError):
                p.unlink(missing_ok=True)


def _write_state(att: _Attempt) -> None:
    state = {
        "version": STATE_VERSION,
        "job_id": att.job_id,
        "attempt": att.attempt,
        "started_unix": att.started_unix,
        "walltime_limit_s": att.walltime_limit_s,
        "log_dir": str(att.log_dir),
        "workers": [
            {"rank": w.rank, "node": w.node, "pid": w.pid, "pgid": w.pid, "start_ticks": w.start_ticks,
             "command_pid": w.command_pid, "exit_file": str(w.exit_file)}
            for w in att.workers
        ],
    }
    tmp = att.state_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
    os.replace(tmp, att.state_file)


def _read_state(path: Path) -> tuple[RecoveredAttempt, dict[int, Path]] | None:
    """The attempt a state file names, and its workers' exit files by rank (none in version 1)."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        if state["version"] not in (1, STATE_VERSION):
            raise ValueError(f"version {state['version']!r}, expected 1 or {STATE_VERSION}")
        exit_files = {int(w["rank"]): Path(w["exit_file"]) for w in state["workers"] if state["version"] >= 2}
        workers = tuple(
            RecoveredWorker(
                int(w["rank"]), str(w["node"]), int(w["pid"]), int(w["pgid"]), w["start_ticks"],
                _running(int(w["pid"]), w["start_ticks"], keeper=state["version"] >= 2),
                _read_exit_code(exit_files.get(int(w["rank"]))),
            )
            for w in state["workers"]
        )
        recovered = RecoveredAttempt(
            str(state["job_id"]), int(state["attempt"]), workers, Path(state["log_dir"]),
            float(state["started_unix"]), state["walltime_limit_s"], path,
        )
        return recovered, exit_files
    except (OSError, ValueError, KeyError, TypeError) as e:
        _log.warning("skipping %s: not a kumo executor state file (%s)", path, e)
        return None
