"""The local executor with real processes: small ``python -c`` programs, every wait bounded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import kumo.executors
from kumo.core import InvalidValueError, KumoError, Placement, WorkerPlacement
from kumo.executors import (
    EventKind,
    Executor,
    ExecutorError,
    ExecutorEvent,
    GpuDevice,
    GpuInventory,
    LaunchSpec,
    LocalExecutor,
    follow,
    wait_for,
)

TIMEOUT_S = 10.0  # every wait's deadline; the tests normally take a fraction of it

ENV_KEYS = ["RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK", "NODE_NAME", "MASTER_ADDR",
            "MASTER_PORT", "CUDA_VISIBLE_DEVICES", "KUMO_JOB_ID", "KUMO_ATTEMPT", "KUMO_GPU_MILLI", "FOO"]
PRINT_ENV = f"import json, os; print(json.dumps({{k: os.environ.get(k) for k in {ENV_KEYS!r}}}))"
READY = "import os, signal, sys, time; print(os.getpid(), 'ready', flush=True); "
SLEEP = READY + "time.sleep(30)"
TRAP_TERM = READY + (
    "signal.signal(signal.SIGTERM, lambda *_: (print('got SIGTERM', flush=True), sys.exit(0))); time.sleep(30)"
)
IGNORE_TERM = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); " + SLEEP


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def two_on_one_node() -> Placement:
    workers = (WorkerPlacement(0, "local-0", (0, 1)), WorkerPlacement(1, "local-0", (2, 3)))
    return Placement("h200", "japan-east", workers)


def spec(
    tmp_path: Path, job: str, code: str, placement: Placement | None = None, *, attempt: int = 0,
    env: dict[str, str] | None = None, workdir: Path | None = None, walltime_limit_s: float | None = None,
) -> LaunchSpec:
    return LaunchSpec(job_id=job, attempt=attempt, placement=placement or two_on_one_node(), command=py(code),
                      env=env or {}, workdir=workdir, walltime_limit_s=walltime_limit_s, log_dir=tmp_path / "logs")


def wait_until(predicate: Callable[[], bool], timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def ready_pid(ex: LocalExecutor, job: str, rank: int, attempt: int = 0) -> int:
    """Wait until the worker printed 'ready' (its signal handlers are in place); return its pid."""
    path = ex.logs(job, attempt, rank)
    wait_until(lambda: "ready" in path.read_text())
    return int(path.read_text().split()[0])


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def kinds(events: list[ExecutorEvent], job: str) -> list[EventKind]:
    return [e.kind for e in events if e.job_id == job]


def last(events: list[ExecutorEvent], job: str) -> ExecutorEvent:
    return [e for e in events if e.job_id == job][-1]


@pytest.fixture
def inventory() -> GpuInventory:
    return GpuInventory.virtual({"local-0": ("h200", 4), "local-1": ("h200", 4)},
                                addresses={"local-0": "127.0.0.1", "local-1": "127.0.0.2"})


@pytest.fixture
def executor(tmp_path: Path, inventory: GpuInventory) -> Iterator[LocalExecutor]:
    ex = LocalExecutor(tmp_path / "state", inventory, grace_s=0.5)
    yield ex
    ex.shutdown(grace_s=0.2)
    assert ex.running() == {}


def test_the_local_executor_follows_the_protocol(executor: LocalExecutor) -> None:
    assert isinstance(executor, Executor)


def test_the_public_surface_is_pinned() -> None:
    assert set(kumo.executors.__all__) == {
        "EventKind", "Executor", "ExecutorError", "ExecutorEvent", "GpuDevice", "GpuInventory", "LaunchSpec",
        "LocalExecutor", "RecoveredAttempt", "RecoveredWorker", "discover", "follow", "log_path",
        "model_from_name", "wait_for",
    }
    assert issubclass(ExecutorError, KumoError)


def test_a_two_worker_gang_gets_the_env_contract_and_succeeds(executor: LocalExecutor, tmp_path: Path) -> None:
    executor.launch(spec(tmp_path, "team/vlm", PRINT_ENV, attempt=2, env={"FOO": "bar", "CUDA_VISIBLE_DEVICES": "7"}))
    assert executor.running() == {"team/vlm": 2}
    assert (tmp_path / "state" / "team%2Fvlm.2.json").exists()
    events = wait_for(executor, "team/vlm", timeout_s=TIMEOUT_S)

    assert kinds(events, "team/vlm") == [EventKind.STARTED, EventKind.SUCCEEDED]
    assert (events[1].exit_code, events[1].exit_codes, events[1].attempt) == (0, (0, 0), 2)
    assert events[0].at <= events[1].at
    envs = [json.loads(executor.logs("team/vlm", 2, r).read_text()) for r in (0, 1)]
    port = envs[0]["MASTER_PORT"]
    assert 1024 <= int(port) <= 65535
    common = {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "NODE_RANK": "0", "NODE_NAME": "local-0",
              "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "KUMO_JOB_ID": "team/vlm", "KUMO_ATTEMPT": "2",
              "KUMO_GPU_MILLI": "1000", "FOO": "bar"}
    assert envs[0] == {**common, "RANK": "0", "LOCAL_RANK": "0", "CUDA_VISIBLE_DEVICES": "0,1"}
    assert envs[1] == {**common, "RANK": "1", "LOCAL_RANK": "1", "CUDA_VISIBLE_DEVICES": "2,3"}
    assert executor.running() == {}
    assert list((tmp_path / "state").iterdir()) == []  # the state file goes with the attempt
    assert executor.logs("team/vlm", 2, 1) == tmp_path / "logs" / "team%2Fvlm.2.1.log"


def test_local_ranks_and_master_address_follow_the_nodes(executor: LocalExecutor, tmp_path: Path) -> None:
    placement = Placement("h200", "japan-east", (
        WorkerPlacement(0, "local-1", (3,)), WorkerPlacement(1, "local-0", (0,), gpu_milli=500),
        WorkerPlacement(2, "local-1", (1,)),
    ))
    executor.launch(spec(tmp_path, "spread", PRINT_ENV, placement))
    assert kinds(wait_for(executor, "spread", timeout_s=TIMEOUT_S), "spread")[-1] is EventKind.SUCCEEDED
    envs = [json.loads(executor.logs("spread", 0, r).read_text()) for r in range(3)]
    picked = ["RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK", "NODE_NAME", "CUDA_VISIBLE_DEVICES",
              "KUMO_GPU_MILLI", "MASTER_ADDR", "WORLD_SIZE"]
    assert [[e[k] for k in picked] for e in envs] == [
        ["0", "0", "2", "0", "local-1", "3", "1000", "127.0.0.2", "3"],
        ["1", "0", "1", "1", "local-0", "0", "500", "127.0.0.2", "3"],
        ["2", "1", "2", "0", "local-1", "1", "1000", "127.0.0.2", "3"],
    ]


def test_real_gpus_are_made_visible_by_uuid(tmp_path: Path) -> None:
    devices = tuple(GpuDevice("gpu-1", "10.0.0.5", "h200", i, f"GPU-{i}aaa", 143_771, i) for i in range(2))
    ex = LocalExecutor(tmp_path / "state", GpuInventory(devices, "nvml"))
    placement = Placement("h200", "r", (WorkerPlacement(0, "gpu-1", (1, 0)),))
    ex.launch(spec(tmp_path, "uuid", PRINT_ENV, placement))
    assert kinds(wait_for(ex, "uuid", timeout_s=TIMEOUT_S), "uuid")[-1] is EventKind.SUCCEEDED
    env = json.loads(ex.logs("uuid", 0, 0).read_text())
    assert (env["CUDA_VISIBLE_DEVICES"], env["MASTER_ADDR"]) == ("GPU-1aaa,GPU-0aaa", "10.0.0.5")


def test_a_failing_worker_fails_the_gang_and_the_others_are_killed(executor: LocalExecutor, tmp_path: Path) -> None:
    code = READY + "time.sleep(0.1); sys.exit(3) if os.environ['RANK'] == '1' else time.sleep(30)"
    executor.launch(spec(tmp_path, "gang", code))
    sleeper = ready_pid(executor, "gang", 0)
    events = wait_for(executor, "gang", timeout_s=TIMEOUT_S)

    assert kinds(events, "gang") == [EventKind.STARTED, EventKind.FAILED]
    failed = last(events, "gang")
    assert (failed.exit_code, failed.message) == (3, "rank 1 exited with code 3")
    assert failed.exit_codes == (-15, 3)  # the sleeper got SIGTERM
    assert gone(sleeper)


def test_a_command_that_does_not_exist_is_a_failed_event(executor: LocalExecutor, tmp_path: Path) -> None:
    launch = spec(tmp_path, "typo", "")
    executor.launch(LaunchSpec(job_id="typo", attempt=0, placement=launch.placement,
                               command=["kumo-no-such-program", "--x"], log_dir=launch.log_dir))
    [event] = executor.poll()
    assert (event.kind, event.exit_code, event.message) == (
        EventKind.FAILED, 127, "command not found: kumo-no-such-program")
    assert executor.running() == {}
    assert executor.logs("typo", 0, 0).read_text() == "kumo: command not found: kumo-no-such-program\n"
    assert list((tmp_path / "state").iterdir()) == []


def test_a_missing_workdir_is_a_failed_event(executor: LocalExecutor, tmp_path: Path) -> None:
    executor.launch(spec(tmp_path, "nowhere", "pass", workdir=tmp_path / "missing"))
    [event] = executor.poll()
    assert (event.kind, event.exit_code, event.message) == (
        EventKind.FAILED, 126, f"workdir not found: {tmp_path / 'missing'}")


def test_stop_sends_sigterm_and_a_job_that_exits_in_the_grace_is_stopped(
    executor: LocalExecutor, tmp_path: Path
) -> None:
    executor.launch(spec(tmp_path, "trap", TRAP_TERM))
    pids = [ready_pid(executor, "trap", r) for r in (0, 1)]
    started = time.monotonic()
    executor.stop("trap", "cancelled by alice", grace_s=5.0)
    events = wait_for(executor, "trap", timeout_s=TIMEOUT_S)

    stopped = last(events, "trap")
    assert (stopped.kind, stopped.exit_code, stopped.exit_codes) == (EventKind.STOPPED, 0, (0, 0))
    assert stopped.message == "stopped: cancelled by alice"
    assert time.monotonic() - started < 5.0  # it did not wait for SIGKILL
    assert "got SIGTERM" in executor.logs("trap", 0, 1).read_text()
    assert all(gone(p) for p in pids)


def test_stop_kills_a_job_that_ignores_sigterm_after_the_grace(executor: LocalExecutor, tmp_path: Path) -> None:
    executor.launch(spec(tmp_path, "stubborn", IGNORE_TERM))
    pids = [ready_pid(executor, "stubborn", r) for r in (0, 1)]
    started = time.monotonic()
    executor.stop("stubborn", "preempted by lab-vlm", grace_s=0.3)
    events = wait_for(executor, "stubborn", timeout_s=TIMEOUT_S)

    stopped = last(events, "stubborn")
    assert (stopped.kind, stopped.exit_code, stopped.exit_codes) == (EventKind.STOPPED, -9, (-9, -9))
    assert time.monotonic() - started >= 0.3
    assert all(gone(p) for p in pids)


def test_the_grace_runs_on_the_injected_clock(tmp_path: Path, inventory: GpuInventory) -> None:
    clock = FakeClock()
    ex = LocalExecutor(tmp_path / "state", inventory, clock)
    try:
        ex.launch(spec(tmp_path, "stubborn", IGNORE_TERM))
        pid = ready_pid(ex, "stubborn", 0)
        ex.stop("stubborn", "cancelled", grace_s=60)
        time.sleep(0.2)
        assert kinds(ex.poll(), "stubborn") == [EventKind.STARTED]  # SIGTERM ignored; the grace lasts
        assert not gone(pid)
        clock.now += 60
        stopped = last(wait_for(ex, "stubborn", timeout_s=TIMEOUT_S), "stubborn")
        assert (stopped.kind, stopped.exit_code, stopped.at) == (EventKind.STOPPED, -9, 1060.0)
    finally:
        ex.shutdown(grace_s=0.1)


def test_walltime_is_enforced_by_poll(tmp_path: Path, inventory: GpuInventory) -> None:
    clock = FakeClock()
    ex = LocalExecutor(tmp_path / "state", inventory, clock, grace_s=5.0)
    try:
        ex.launch(spec(tmp_path, "long", SLEEP, walltime_limit_s=3600.0))
        pid = ready_pid(ex, "long", 1)
        clock.now += 3599
        assert kinds(ex.poll(), "long") == [EventKind.STARTED]
        clock.now += 2
        ended = last(wait_for(ex, "long", timeout_s=TIMEOUT_S), "long")
        assert (ended.kind, ended.exit_code) == (EventKind.WALLTIME, -15)
        assert ended.message == "ran past its walltime limit of 3600s"
        assert gone(pid)
    finally:
        ex.shutdown(grace_s=0.1)


def test_walltime_with_the_real_clock(executor: LocalExecutor, tmp_path: Path) -> None:
    # 2 s: long enough for the workers (Python) to start and ignore SIGTERM on a loaded machine
    executor.launch(spec(tmp_path, "short", IGNORE_TERM, walltime_limit_s=2.0))
    started, ended = wait_for(executor, "short", timeout_s=TIMEOUT_S)
    assert (ended.kind, ended.exit_code) == (EventKind.WALLTIME, -9)  # ignored SIGTERM, killed after the grace
    assert ended.at - started.at >= 2.0 + 0.5


def test_logs_are_captured_and_follow_yields_lines_as_they_come(executor: LocalExecutor, tmp_path: Path) -> None:
    go = tmp_path / "go"
    code = ("import pathlib, sys, time; print('first'); print('to stderr', file=sys.stderr); "
            f"go = pathlib.Path({str(go)!r}); deadline = time.monotonic() + 10\n"
            "while not go.exists() and time.monotonic() < deadline: time.sleep(0.01)\n"
            "print('second'); time.sleep(0.1); print('third', end='')")
    one = Placement("h200", "japan-east", (WorkerPlacement(0, "local-0", (0,)),))
    executor.launch(spec(tmp_path, "chatty", code, one))
    lines = executor.follow("chatty", 0, 0, interval_s=0.01, timeout_s=TIMEOUT_S)
    assert [next(lines), next(lines)] == ["first", "to stderr"]
    go.touch()  # 'second' and 'third' are written only now, after following began
    assert list(lines) == ["second", "third"]  # and it stops: the attempt has ended
    assert kinds(wait_for(executor, "chatty", timeout_s=TIMEOUT_S), "chatty")[-1] is EventKind.SUCCEEDED
    assert executor.logs("chatty", 0, 0).read_text() == "first\nto stderr\nsecond\nthird"


def test_follow_waits_for_a_file_and_can_skip_what_was_there(tmp_path: Path) -> None:
    path = tmp_path / "later.log"
    assert list(follow(path, lambda: True)) == []
    path.write_text("old\n")
    done = iter([False, False, True])
    reader = follow(path, lambda: next(done), interval_s=0.01, from_start=False)
    with path.open("a") as f:
        f.write("new\n")
    assert list(reader) == ["new"]
    assert list(follow(path, lambda: False, timeout_s=0.05)) == ["old", "new"]


def test_logs_of_unknown_attempts_or_ranks_are_errors(executor: LocalExecutor, tmp_path: Path) -> None:
    with pytest.raises(ExecutorError, match="no attempt 0 of job 'ghost' is known"):
        executor.logs("ghost", 0, 0)
    executor.launch(spec(tmp_path, "pair", "pass"))
    with pytest.raises(ExecutorError, match=r"job 'pair' attempt 0 has no rank 2 \(world size 2\)"):
        executor.logs("pair", 0, 2)


def test_misuse_raises_executor_errors(executor: LocalExecutor, tmp_path: Path) -> None:
    executor.launch(spec(tmp_path, "once", SLEEP))
    with pytest.raises(ExecutorError, match="job 'once' attempt 0 is still running"):
        executor.launch(spec(tmp_path, "once", SLEEP, attempt=1))
    elsewhere = Placement("h200", "r", (WorkerPlacement(0, "local-9", (0,)),))
    with pytest.raises(ExecutorError, match=r"node 'local-9' is not in the GPU inventory \(nodes: local-0, local-1\)"):
        executor.launch(spec(tmp_path, "lost-node", "pass", elsewhere))
    too_many = Placement("h200", "r", (WorkerPlacement(0, "local-0", (4,)),))
    with pytest.raises(ExecutorError, match="node 'local-0' has no GPU 4"):
        executor.launch(spec(tmp_path, "gpu4", "pass", too_many))
    wrong_model = Placement("h100", "r", (WorkerPlacement(0, "local-0", (0,)),))
    with pytest.raises(ExecutorError, match="placed on h100 GPUs, but GPU 0 of node 'local-0' is a h200"):
        executor.launch(spec(tmp_path, "h100-job", "pass", wrong_model))
    assert executor.running() == {"once": 0}
    executor.stop("never-launched", "cancel", grace_s=1.0)  # stopping what does not run does nothing


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"job_id": "../x"}, "name '../x' must be"),
        ({"attempt": -1}, "attempt must be an integer >= 0"),
        ({"command": []}, "command must be a non-empty list"),
        ({"walltime_limit_s": 0}, "walltime_limit_s must be > 0"),
        ({"placement": Placement("h200", "r", (WorkerPlacement(1, "local-0", (0,)),))}, "ranks must be 0..n-1"),
    ],
)
def test_launch_specs_validate_themselves(tmp_path: Path, change: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"job_id": "j", "attempt": 0, "placement": two_on_one_node(), "command": ["true"],
                                 "log_dir": tmp_path} | change
    with pytest.raises(InvalidValueError, match=message):
        LaunchSpec(**fields)  # type: ignore[arg-type]


def group_of(pid: int) -> int:
    """The process group of ``pid`` (a worker's is its keeper's pid)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[2])


def test_recover_finds_a_running_attempt_from_its_state_file(tmp_path: Path, inventory: GpuInventory) -> None:
    first = LocalExecutor(tmp_path / "state", inventory)
    try:
        first.launch(spec(tmp_path, "survivor", SLEEP, attempt=1, walltime_limit_s=3600.0))
        pids = (ready_pid(first, "survivor", 0, 1), ready_pid(first, "survivor", 1, 1))
        keepers = tuple(group_of(p) for p in pids)  # each worker runs under a keeper, its group's leader
        assert len(set(keepers)) == 2 and set(keepers).isdisjoint(pids)
        first.poll()

        restarted = LocalExecutor(tmp_path / "state", inventory)  # a new controller, same state_dir
        [found] = restarted.recover()
        assert (found.job_id, found.attempt, found.pids, found.alive) == ("survivor", 1, keepers, True)
        assert [(w.rank, w.node, w.pgid) for w in found.workers] == [(0, "local-0", keepers[0]),
                                                                     (1, "local-0", keepers[1])]
        assert found.state_file == tmp_path / "state" / "survivor.1.json"
        assert found.walltime_limit_s == 3600.0

        restarted.adopt(found)
        assert restarted.running() == {"survivor": 1}
        assert restarted.recover() == []  # tracked now
        assert restarted.logs("survivor", 1, 0) == first.logs("survivor", 1, 0)
        restarted.stop("survivor", "not in the database", grace_s=2.0)
        stopped = last(wait_for(restarted, "survivor", timeout_s=TIMEOUT_S), "survivor")
        # the keepers wrote how their workers ended: the exit codes are known to the new executor
        assert (stopped.kind, stopped.exit_code, stopped.exit_codes) == (EventKind.STOPPED, -15, (-15, -15))
        assert not found.state_file.exists()
        assert list((tmp_path / "state").iterdir()) == []  # the exit files went with it
        assert all(gone(p) for p in pids)  # reaped by their keepers
        wait_for(first, "survivor", timeout_s=TIMEOUT_S)  # the old one reaps the keepers (a real restart: init)
    finally:
        first.shutdown(grace_s=0.1)


def test_a_reused_pid_is_never_signalled(tmp_path: Path, inventory: GpuInventory) -> None:
    bystander = subprocess.Popen(py("import time; time.sleep(30)"), start_new_session=True)
    try:
        state = tmp_path / "state"
        state.mkdir()
        (state / "old.0.json").write_text(json.dumps({
            "version": 1, "job_id": "old", "attempt": 0, "started_unix": time.time() - 60, "walltime_limit_s": None,
            "log_dir": str(tmp_path), "workers": [{"rank": 0, "node": "local-0", "pid": bystander.pid,
                                                   "pgid": bystander.pid, "start_ticks": "1"}],
        }))
        (state / "junk.json").write_text("{not json")
        ex = LocalExecutor(state, inventory)
        [found] = ex.recover()  # the junk file is skipped
        assert (found.job_id, found.pids, found.alive) == ("old", (bystander.pid,), False)  # started at another time
        ex.adopt(found)
        ex.stop("old", "cleanup", grace_s=0)
        [event] = ex.poll()
        assert (event.kind, event.job_id) == (EventKind.STOPPED, "old")
        assert not (state / "old.0.json").exists()
        time.sleep(0.05)
        assert bystander.poll() is None  # the process that now has that pid was left alone
    finally:
        bystander.kill()
        bystander.wait(timeout=TIMEOUT_S)
