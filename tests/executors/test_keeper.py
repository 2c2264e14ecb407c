"""The keeper (``kumo.executors._keeper``) on its own, and what it gives the local executor: exact
exit codes, also for attempts adopted by a new executor after a restart. Every wait is bounded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kumo.core import Placement, WorkerPlacement
from kumo.executors import EventKind, ExecutorEvent, GpuInventory, LaunchSpec, LocalExecutor, wait_for
from kumo.executors import local as local_executor

TIMEOUT_S = 10.0
KEEPER = local_executor.KEEPER
READY = "import os, signal, sys, time; print(os.getpid(), 'ready', flush=True); "
SLEEP = READY + "time.sleep(30)"
IGNORE_TERM = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); " + SLEEP


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def wait_until(predicate: Callable[[], bool], timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, ppid, pgrp, ...); None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def reaped(pid: int) -> bool:
    """Gone from the process table: neither running nor a zombie."""
    return stat(pid) is None


def not_running(pid: int) -> bool:
    fields = stat(pid)
    return fields is None or fields[0] in ("Z", "X")


def printed_pid(log: Path) -> int:
    wait_until(lambda: log.exists() and "ready" in log.read_text())
    return int(log.read_text().split()[0])


def last(events: list[ExecutorEvent], job: str) -> ExecutorEvent:
    return [e for e in events if e.job_id == job][-1]


# -- the keeper on its own -----------------------------------------------------------------------


class Kept:
    """A keeper started as the executor starts it (own session, output to a log)."""

    def __init__(self, tmp_path: Path, command: list[str], *, env: dict[str, str] | None = None,
                 preexec: Callable[[], None] | None = None) -> None:
        self.exit_file = tmp_path / "w.exit"
        self.log = tmp_path / "w.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(KEEPER), str(self.exit_file), "--", *command],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env=env, preexec_fn=preexec, cwd=tmp_path,
            )

    def wait(self) -> int:
        return self.proc.wait(timeout=TIMEOUT_S)

    def recorded(self) -> int:
        return int(self.exit_file.read_text())


@pytest.mark.parametrize(("code", "expected"), [
    ("pass", 0),
    ("import sys; sys.exit(3)", 3),
    ("import sys; sys.exit(300)", 44),  # the shell's truncation: only 8 bits reach the parent
    ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", -15),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", -9),
])
def test_the_keeper_records_the_exit_code_and_ends_the_same_way(tmp_path: Path, code: str, expected: int) -> None:
    kept = Kept(tmp_path, py(code))
    assert kept.wait() == expected
    assert kept.recorded() == expected
    assert not (tmp_path / "w.exit.tmp").exists()


def test_the_keeper_leaves_no_core_dump_of_its_own(tmp_path: Path) -> None:
    kept = Kept(tmp_path, py("import os, signal, resource; resource.setrlimit(resource.RLIMIT_CORE, (0, 0));"
                             " os.kill(os.getpid(), signal.SIGSEGV)"))
    assert (kept.wait(), kept.recorded()) == (-11, -11)
    assert not any(p.name.startswith("core") for p in tmp_path.iterdir())


def test_a_group_sigterm_reaches_the_command_not_the_keeper(tmp_path: Path) -> None:
    trap = READY + "signal.signal(signal.SIGTERM, lambda *_: sys.exit(7)); time.sleep(30)"
    kept = Kept(tmp_path, py(trap))
    pid = printed_pid(kept.log)
    assert stat(pid)[1:3] == [str(kept.proc.pid), str(kept.proc.pid)]  # the keeper's child, in its group
    os.killpg(kept.proc.pid, signal.SIGTERM)
    assert (kept.wait(), kept.recorded()) == (7, 7)
    assert reaped(pid)


def test_sigusr1_kills_the_whole_group_and_the_keeper_reaps_its_command(tmp_path: Path) -> None:
    # the command ignores SIGTERM and started a child of its own, in the same group
    stray_file = tmp_path / "stray.pid"
    code = (IGNORE_TERM.replace("time.sleep(30)", "")
            + f"import subprocess; s = subprocess.Popen(['sleep', '30']); open({str(stray_file)!r}, 'w')"
            f".write(str(s.pid)); time.sleep(30)")
    kept = Kept(tmp_path, py(code))
    pid = printed_pid(kept.log)
    wait_until(lambda: stray_file.exists() and stray_file.read_text() != "")
    stray = int(stray_file.read_text())
    os.killpg(kept.proc.pid, signal.SIGTERM)  # ignored by both
    time.sleep(0.1)
    assert stat(pid) is not None and kept.proc.poll() is None
    os.kill(kept.proc.pid, signal.SIGUSR1)
    assert (kept.wait(), kept.recorded()) == (-9, -9)
    assert reaped(pid)  # not a zombie: the keeper waited for it
    wait_until(lambda: not_running(stray))  # killed (a zombie of the reparented-to process, if it does not reap)


def test_the_keeper_kills_what_the_command_left_in_its_group(tmp_path: Path) -> None:
    stray_file = tmp_path / "stray.pid"
    code = (f"import subprocess; s = subprocess.Popen(['sleep', '30']); open({str(stray_file)!r}, 'w')"
            f".write(str(s.pid))")
    kept = Kept(tmp_path, py(code))
    assert (kept.wait(), kept.recorded()) == (0, 0)
    wait_until(lambda: not_running(int(stray_file.read_text())))


def test_a_command_that_cannot_start_is_reported_as_the_shell_does(tmp_path: Path) -> None:
    kept = Kept(tmp_path, ["kumo-no-such-program", "--x"])
    assert (kept.wait(), kept.recorded()) == (127, 127)
    assert kept.log.read_text() == "kumo: command not found: kumo-no-such-program\n"
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    (tmp_path / "second").mkdir()
    kept = Kept(tmp_path / "second", [str(script)])
    assert (kept.wait(), kept.recorded()) == (126, 126)
    assert kept.log.read_text() == f"kumo: permission denied: {script}\n"


def test_the_command_gets_the_environment_exactly(tmp_path: Path) -> None:
    # Python coerces the C locale by setting LC_CTYPE in its own environment: the command must
    # not see that, only what the keeper was given
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "FOO": "bar baz", "EMPTY": ""}
    kept = Kept(tmp_path, ["env"], env=env)  # not Python, which would coerce its own locale
    assert kept.wait() == 0
    assert dict(line.split("=", 1) for line in kept.log.read_text().splitlines()) == env


def test_signals_the_executor_ignores_stay_ignored_for_the_command(tmp_path: Path) -> None:
    def ignore_hup() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    code = ("import signal; print(signal.getsignal(signal.SIGHUP) == signal.SIG_IGN,"
            " signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)")
    kept = Kept(tmp_path, py(code), preexec=ignore_hup)
    assert kept.wait() == 0
    assert kept.log.read_text() == "True True\n"  # SIGHUP inherited ignored; SIGTERM default, not the keeper's


# -- the executor with keepers -------------------------------------------------------------------


@pytest.fixture
def inventory() -> GpuInventory:
    return GpuInventory.virtual({"local-0": ("h200", 4)})


@pytest.fixture
def executor(tmp_path: Path, inventory: GpuInventory) -> Iterator[LocalExecutor]:
    ex = LocalExecutor(tmp_path / "state", inventory, grace_s=0.5)
    yield ex
    ex.shutdown(grace_s=0.2)


def one() -> Placement:
    return Placement("h200", "japan-east", (WorkerPlacement(0, "local-0", (0,)),))


def two() -> Placement:
    return Placement("h200", "japan-east", (WorkerPlacement(0, "local-0", (0, 1)), WorkerPlacement(1, "local-0", (2,))))


def spec(tmp_path: Path, job: str, code: str | list[str], placement: Placement | None = None) -> LaunchSpec:
    command = py(code) if isinstance(code, str) else code
    return LaunchSpec(job_id=job, attempt=0, placement=placement or one(), command=command, log_dir=tmp_path / "logs")


@pytest.mark.parametrize(("code", "stop", "kind", "exit_code"), [
    ("pass", False, EventKind.SUCCEEDED, 0),
    ("import sys; sys.exit(3)", False, EventKind.FAILED, 3),
    (SLEEP, True, EventKind.STOPPED, -15),
    (IGNORE_TERM, True, EventKind.STOPPED, -9),  # SIGUSR1 to the keeper after the grace
])
def test_exit_codes_of_own_workers_are_unchanged(
    executor: LocalExecutor, tmp_path: Path, code: str, stop: bool, kind: EventKind, exit_code: int
) -> None:
    executor.launch(spec(tmp_path, "job", code))
    if stop:
        pid = printed_pid(executor.logs("job", 0, 0))
        executor.stop("job", "cancelled", grace_s=0.2)
    ended = last(wait_for(executor, "job", timeout_s=TIMEOUT_S), "job")
    assert (ended.kind, ended.exit_code, ended.exit_codes) == (kind, exit_code, (exit_code,))
    if stop:
        assert reaped(pid)
    assert list((tmp_path / "state").iterdir()) == []


def test_a_command_that_does_not_exist_fails_without_starting(executor: LocalExecutor, tmp_path: Path) -> None:
    executor.launch(spec(tmp_path, "typo", ["kumo-no-such-program"], two()))
    [event] = executor.poll()  # no `started`: the keeper said so before launch() returned
    assert (event.kind, event.exit_code, event.message) == (EventKind.FAILED, 127,
                                                            "command not found: kumo-no-such-program")
    assert executor.logs("typo", 0, 0).read_text() == "kumo: command not found: kumo-no-such-program\n"
    assert list((tmp_path / "state").iterdir()) == []  # no state file, no exit files


def test_started_names_the_commands_pids_and_exit_files_sit_beside_the_state_file(
    executor: LocalExecutor, tmp_path: Path
) -> None:
    executor.launch(spec(tmp_path, "team/pair", SLEEP, two()))
    pids = [printed_pid(executor.logs("team/pair", 0, r)) for r in (0, 1)]
    groups = [int(stat(p)[2]) for p in pids]
    [started] = executor.poll()
    assert started.message == f"pids {pids[0]},{pids[1]} (process groups {groups[0]},{groups[1]})"
    state = json.loads((tmp_path / "state" / "team%2Fpair.0.json").read_text())
    assert state["version"] == 2
    assert [(w["pid"], w["pgid"], w["command_pid"], w["exit_file"]) for w in state["workers"]] == [
        (groups[r], groups[r], pids[r], str(tmp_path / "state" / f"team%2Fpair.0.{r}.exit")) for r in (0, 1)
    ]
    executor.stop("team/pair", "done", grace_s=1.0)
    assert last(wait_for(executor, "team/pair", timeout_s=TIMEOUT_S), "team/pair").exit_codes == (-15, -15)
    assert list((tmp_path / "state").iterdir()) == []


def test_a_keeper_that_dies_before_answering_fails_the_launch(
    executor: LocalExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken_keeper.py"
    broken.write_text("import sys; sys.exit(5)\n")
    monkeypatch.setattr(local_executor, "KEEPER", broken)
    executor.launch(spec(tmp_path, "broken", "pass"))
    [event] = executor.poll()
    assert (event.kind, event.exit_code) == (EventKind.FAILED, 126)
    assert event.message == f"cannot start {sys.executable}: its keeper exited with code 5"
    assert executor.logs("broken", 0, 0).read_text() == f"kumo: {event.message}\n"


# -- adopted attempts: exit codes across a restart -------------------------------------------------


def gated(go: Path, then: str) -> str:
    """Code that prints ready, waits (bounded) until ``go`` exists, then runs ``then``."""
    return READY + textwrap.dedent(f"""
        deadline = time.monotonic() + {TIMEOUT_S}
        while not os.path.exists({str(go)!r}) and time.monotonic() < deadline:
            time.sleep(0.01)
        {then}
    """)


@pytest.mark.parametrize(("then", "kind", "exit_code", "message"), [
    ("sys.exit(3) if os.environ['RANK'] == '1' else time.sleep(30)", EventKind.FAILED, 3,
     "rank 1 exited with code 3"),
    ("sys.exit(0)", EventKind.SUCCEEDED, 0, "all 2 workers exited 0"),
])
def test_an_adopted_attempt_ends_with_its_exit_codes(
    tmp_path: Path, inventory: GpuInventory, then: str, kind: EventKind, exit_code: int, message: str
) -> None:
    go = tmp_path / "go"
    first = LocalExecutor(tmp_path / "state", inventory)
    try:
        first.launch(spec(tmp_path, "orphan", gated(go, then), two()))
        pids = [printed_pid(first.logs("orphan", 0, r)) for r in (0, 1)]
        restarted = LocalExecutor(tmp_path / "state", inventory, grace_s=1.0)  # a new controller
        [found] = restarted.recover()
        restarted.adopt(found)
        go.touch()
        ended = last(wait_for(restarted, "orphan", timeout_s=TIMEOUT_S), "orphan")
        assert (ended.kind, ended.exit_code, ended.message) == (kind, exit_code, message)
        assert ended.exit_codes == ((-15, 3) if kind is EventKind.FAILED else (0, 0))  # rank 0 was stopped
        assert all(reaped(p) for p in pids)
        assert list((tmp_path / "state").iterdir()) == []
    finally:
        first.shutdown(grace_s=0.1)


def test_a_stopped_adopted_attempt_that_ignores_sigterm_is_killed_and_reaped(
    tmp_path: Path, inventory: GpuInventory
) -> None:
    first = LocalExecutor(tmp_path / "state", inventory)
    try:
        first.launch(spec(tmp_path, "stubborn", IGNORE_TERM, two()))
        pids = [printed_pid(first.logs("stubborn", 0, r)) for r in (0, 1)]
        restarted = LocalExecutor(tmp_path / "state", inventory)
        [found] = restarted.recover()
        restarted.adopt(found)
        restarted.stop("stubborn", "not in the database", grace_s=0.3)
        stopped = last(wait_for(restarted, "stubborn", timeout_s=TIMEOUT_S), "stubborn")
        assert (stopped.kind, stopped.exit_code, stopped.exit_codes) == (EventKind.STOPPED, -9, (-9, -9))
        assert stopped.message == "stopped: not in the database"
        for pid in pids:  # gone, and not a zombie: /proc/<pid> no longer exists
            assert stat(pid) is None, f"worker {pid} is still in the process table: {stat(pid)}"
    finally:
        first.shutdown(grace_s=0.1)


def test_walltime_is_enforced_on_an_adopted_attempt(tmp_path: Path, inventory: GpuInventory) -> None:
    first = LocalExecutor(tmp_path / "state", inventory)
    try:
        launch = spec(tmp_path, "long", SLEEP)
        first.launch(LaunchSpec(job_id="long", attempt=0, placement=one(), command=launch.command,
                                walltime_limit_s=0.3, log_dir=launch.log_dir))
        printed_pid(first.logs("long", 0, 0))
        restarted = LocalExecutor(tmp_path / "state", inventory, grace_s=1.0)
        [found] = restarted.recover()
        restarted.adopt(found)
        ended = last(wait_for(restarted, "long", timeout_s=TIMEOUT_S), "long")
        assert (ended.kind, ended.exit_code) == (EventKind.WALLTIME, -15)
    finally:
        first.shutdown(grace_s=0.1)


def test_a_version_1_state_file_is_adopted_and_fails_with_its_exit_status_unknown(
        tmp_path: Path, inventory: GpuInventory) -> None:
    """Workers started before keepers existed: adopted as before, their exit status unknown. Such an
    attempt may have run to its end, so it fails (it is never run a second time)."""
    go = tmp_path / "go"
    worker = subprocess.Popen(py(gated(go, "sys.exit(0)")), stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert worker.stdout is not None and b"ready" in worker.stdout.readline()
        state = tmp_path / "state"
        state.mkdir()
        (state / "old.0.json").write_text(json.dumps({
            "version": 1, "job_id": "old", "attempt": 0, "started_unix": time.time() - 60, "walltime_limit_s": None,
            "log_dir": str(tmp_path), "workers": [{"rank": 0, "node": "local-0", "pid": worker.pid,
                                                   "pgid": worker.pid, "start_ticks": stat(worker.pid)[19]}],
        }))
        ex = LocalExecutor(state, inventory)
        [found] = ex.recover()
        assert (found.job_id, found.pids, found.alive) == ("old", (worker.pid,), True)
        ex.adopt(found)
        go.touch()
        ended = last(wait_for(ex, "old", timeout_s=TIMEOUT_S), "old")
        assert (ended.kind, ended.exit_code, ended.exit_codes) == (EventKind.FAILED, None, (None,))
        assert ended.message.startswith("exit status unknown: the processes were adopted")
        assert list(state.iterdir()) == []
    finally:
        worker.kill()
        worker.wait(timeout=TIMEOUT_S)


# -- keepers killed hard: run in a process of its own that reaps the workers they leave behind --------

ISOLATED = """
import ctypes, json, os, signal, sys, time
from pathlib import Path
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans come to us
from kumo.core import Placement, WorkerPlacement
from kumo.executors import GpuInventory, LaunchSpec, LocalExecutor, wait_for
from kumo.executors import local
tmp = Path(sys.argv[1])
inventory = GpuInventory.virtual({"local-0": ("h200", 1)})
placement = Placement("h200", "r", (WorkerPlacement(0, "local-0", (0,)),))
go = tmp / "go"

def launch(ex, code):
    prelude = "import os, signal, time; print(os.getpid(), flush=True); "
    ex.launch(LaunchSpec(job_id="j", attempt=0, placement=placement, command=[sys.executable, "-c", prelude + code],
                         log_dir=tmp / "logs"))
    log = tmp / "logs" / "j.0.0.log"
    while not log.read_text().strip():
        time.sleep(0.01)
    return int(log.read_text())

def reap_all():
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return
"""

HARD_KILLED_KEEPER = ISOLATED + """
first = LocalExecutor(tmp / "state", inventory)
pid = launch(first, "any(os.path.exists(%r) or time.sleep(0.01) for _ in range(1000))" % str(go))
restarted = LocalExecutor(tmp / "state", inventory)
[found] = restarted.recover()
restarted.adopt(found)
os.kill(os.getpgid(pid), signal.SIGKILL)  # the keeper dies without an exit file; its command runs on
time.sleep(0.2)
early = restarted.poll()  # the command still runs: the attempt has not ended
[again] = LocalExecutor(tmp / "state", inventory).recover()  # and a third controller would adopt it
go.touch()
ended = wait_for(restarted, "j", timeout_s=10)[-1]
command_ran_to_the_end = not os.path.exists(f"/proc/{pid}/stat") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
reap_all()
print(json.dumps({"early": [e.kind.value for e in early], "alive": again.alive, "kind": ended.kind.value,
                  "exit_code": ended.exit_code,
                  "message": ended.message, "ended": command_ran_to_the_end}))
"""

UNRESPONSIVE_KEEPER = ISOLATED + """
local.KEEPER_KILL_S = 0.3
ex = LocalExecutor(tmp / "state", inventory)
pid = launch(ex, "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(30)")
os.kill(os.getpgid(pid), signal.SIGSTOP)  # a keeper that cannot act on SIGUSR1
started = time.monotonic()
ex.stop("j", "test", grace_s=0)
ended = wait_for(ex, "j", timeout_s=10)[-1]
waited = time.monotonic() - started
reap_all()
print(json.dumps({"kind": ended.kind.value, "exit_code": ended.exit_code, "waited": waited,
                  "worker_gone": not os.path.exists(f"/proc/{pid}")}))
"""


def isolated(script: str, tmp_path: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_an_adopted_worker_whose_keeper_was_killed_hard_fails_once_its_command_ends(tmp_path: Path) -> None:
    result = isolated(HARD_KILLED_KEEPER, tmp_path)
    assert (result["early"], result["alive"]) == ([], True)  # its command, orphaned, still ran
    assert (result["kind"], result["exit_code"], result["ended"]) == ("failed", None, True)
    assert result["message"].startswith("exit status unknown")


def test_a_keeper_that_does_not_answer_sigusr1_gets_sigkill_with_its_group(tmp_path: Path) -> None:
    result = isolated(UNRESPONSIVE_KEEPER, tmp_path)
    assert (result["kind"], result["exit_code"], result["worker_gone"]) == ("stopped", -9, True)
    assert 0.3 <= result["waited"] < 5
