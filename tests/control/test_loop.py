"""The control loop against a real database (SQLite and PostgreSQL) and real local processes."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kumo.control.loop import Controller
from kumo.core import Profile
from kumo.executors import EventKind, ExecutorEvent, GpuInventory, LocalExecutor
from kumo.store import JobRepository, NodeRepository, Store, TenancyRepository
from kumo.store.errors import FencedError
from kumo.store.models import AttemptOutcome, JobState
from kumo.store.repos import LeaseRepository
from tests.store.conftest import fresh_database

PY = sys.executable
NOW_PROFILE = Profile(preemption_min_runtime_s=0.0)


class Clock:
    """Wall-clock time plus a skew the test can add (to expire leases)."""

    def __init__(self) -> None:
        self.skew = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.skew


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with fresh_database(request.param, tmp_path) as url:
        s = Store(url)
        s.upgrade()
        now = datetime.now(UTC)
        with s.session() as session:
            t = TenancyRepository(session)
            t.create_programme("geniac")
            t.create_project("sakura", "geniac")
            t.create_queue("q", quota={"gpu.h200": {"nominal": 8}})
            t.create_user("ada")
            nodes = NodeRepository(session)
            nodes.create_cluster("local", "japan-east")
            nodes.register("local-0", cluster="local", gpu_model="h200", gpus=8, now=now)
        try:
            yield s
        finally:
            s.dispose()


def executor(tmp_path: Path) -> LocalExecutor:
    return LocalExecutor(tmp_path / "state", GpuInventory.virtual({"local-0": ("h200", 8)}), grace_s=2.0)


def controller(store: Store, ex: LocalExecutor, tmp_path: Path, **kw: Any) -> Controller:
    kw.setdefault("profile", NOW_PROFILE)
    return Controller(store, ex, tmp_path / "logs", stop_grace_s=1.0, **kw)


def submit(store: Store, code: str, **spec: Any) -> str:
    spec.setdefault("gpus", 8)
    with store.session() as s:
        job = JobRepository(s).submit("sakura", "q", "ada", {"command": [PY, "-c", code], **spec},
                                      now=datetime.now(UTC))
        return job.id


def job_state(store: Store, job_id: str) -> tuple[JobState, int, str]:
    with store.session(readonly=True) as s:
        job = JobRepository(s).get(job_id)
        return job.state, job.attempts, job.reason


def until(ctl: Controller, done: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "timed out"
        ctl.step()
        time.sleep(0.05)


def test_submit_run_succeed(store: Store, tmp_path: Path) -> None:
    ex = executor(tmp_path)
    ctl = controller(store, ex, tmp_path)
    jid = submit(store, "import os; print('rank', os.environ['RANK'], os.environ['CUDA_VISIBLE_DEVICES'])")
    until(ctl, lambda: job_state(store, jid)[0] is JobState.SUCCEEDED)
    with store.session(readonly=True) as s:
        jobs = JobRepository(s)
        [attempt] = jobs.attempts(jid)
        assert (attempt.outcome, attempt.exit_code, attempt.fencing_token) == (AttemptOutcome.SUCCEEDED, 0, 1)
        assert attempt.placement["workers"][0]["node"] == "local-0"
        kinds = [e.kind for e in jobs.events(jid)]
    assert kinds[0] == "scheduled" and "succeeded" in kinds
    log = (tmp_path / "logs" / f"{jid}.1.0.log").read_text()
    assert "rank 0 0,1,2,3,4,5,6,7" in log


def test_cancel_a_running_job(store: Store, tmp_path: Path) -> None:
    ex = executor(tmp_path)
    ctl = controller(store, ex, tmp_path)
    jid = submit(store, "import time; time.sleep(60)")
    until(ctl, lambda: ex.running().get(jid) == 1)
    with store.session() as s:
        JobRepository(s).request_cancel(jid)
    until(ctl, lambda: job_state(store, jid)[0] is JobState.CANCELLED)
    assert jid not in ex.running()
    with store.session(readonly=True) as s:
        assert JobRepository(s).attempts(jid)[0].outcome is AttemptOutcome.CANCELLED


def test_high_priority_preempts_low_priority(store: Store, tmp_path: Path) -> None:
    ex = executor(tmp_path)
    ctl = controller(store, ex, tmp_path)
    low = submit(store, "import time; time.sleep(60)", priority=0)
    until(ctl, lambda: ex.running().get(low) == 1)
    high = submit(store, "print('urgent')", priority=100)
    until(ctl, lambda: job_state(store, high)[0] is JobState.SUCCEEDED)
    state, attempts, _ = job_state(store, low)
    assert attempts >= 2 or state is JobState.PENDING  # preempted, then waiting or restarted
    with store.session(readonly=True) as s:
        first = JobRepository(s).attempts(low)[0]
        assert first.outcome is AttemptOutcome.PREEMPTED
        assert any(e.kind == "preempted" and e.data["by"] == high for e in JobRepository(s).events(low))
    ex.shutdown(1.0)


def test_walltime_kill_and_gang_failure(store: Store, tmp_path: Path) -> None:
    ex = executor(tmp_path)
    ctl = controller(store, ex, tmp_path)
    slow = submit(store, "import time; time.sleep(60)", walltime_limit_s=0.5)
    until(ctl, lambda: job_state(store, slow)[0].final)
    state, _, reason = job_state(store, slow)
    assert state is JobState.FAILED and "walltime" in reason
    code = "import os, sys, time; sys.exit(3) if os.environ['RANK'] == '1' else time.sleep(60)"
    gang = submit(store, code, gpus=4, workers=2)
    until(ctl, lambda: job_state(store, gang)[0].final)
    with store.session(readonly=True) as s:
        job = JobRepository(s).get(gang)
        assert (job.state, job.exit_code) == (JobState.FAILED, 3)
    assert gang not in ex.running()


def test_two_controllers_one_leader_and_fencing(store: Store, tmp_path: Path) -> None:
    clock = Clock()
    a = controller(store, executor(tmp_path / "a"), tmp_path / "a", holder="a", ttl_s=5.0, clock=clock)
    b = controller(store, executor(tmp_path / "b"), tmp_path / "b", holder="b", ttl_s=5.0, clock=clock)
    assert a.step().leader and not b.step().leader
    assert a.token == 1 and b.token is None
    clock.skew = timedelta(seconds=10)  # a stops renewing; its lease expires; b takes over
    assert b.step().leader and b.token == 2
    with pytest.raises(FencedError), store.session() as s:  # a deposed leader's write is refused
        LeaseRepository(s).check("controller", 1, now=clock())
    assert not a.step().leader


def test_restart_adopts_running_work_and_runs_nothing_twice(store: Store, tmp_path: Path) -> None:
    first = controller(store, executor(tmp_path), tmp_path, holder="first", ttl_s=1.0)
    marker = tmp_path / "runs.txt"
    jid = submit(store, f"import time; open({str(marker)!r}, 'a').write('x'); time.sleep(4)")
    until(first, lambda: first.executor.running().get(jid) == 1)
    # the controller dies here (it is never stepped again); its processes keep running, and a new
    # controller starts on the same state directory once the old lease has expired
    ex = executor(tmp_path)
    second = controller(store, ex, tmp_path, holder="second", ttl_s=1.0)
    until(second, lambda: job_state(store, jid)[0].final)
    state, attempts, reason = job_state(store, jid)
    # adopted processes are not the new controller's children, but their keepers recorded the exit
    # code: the job succeeds, exactly as if the controller had never restarted, and runs once
    assert (state, attempts, reason) == (JobState.SUCCEEDED, 1, "")
    with store.session(readonly=True) as s:
        jobs = JobRepository(s)
        kinds = [e.kind for e in jobs.events(jid)]
        [attempt] = jobs.attempts(jid)
        assert (attempt.outcome, attempt.exit_code) == (AttemptOutcome.SUCCEEDED, 0)
    assert "adopted" in kinds
    assert marker.read_text() == "x"  # it ran once


def test_an_adopted_attempt_its_executor_reports_lost_runs_again(store: Store, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``lost`` means the job may run again, adopted or not: the Ray executor reports an adopted
    attempt whose node died as ``lost`` when the job's restart policy says so (an attempt that may
    have run to its end is reported ``failed`` instead, by the executor that knows)."""
    first = controller(store, executor(tmp_path), tmp_path, holder="first", ttl_s=1.0)
    jid = submit(store, "import time; time.sleep(60)")
    until(first, lambda: first.executor.running().get(jid) == 1)
    ex = executor(tmp_path)
    second = controller(store, ex, tmp_path, holder="second", ttl_s=1.0)
    until(second, lambda: "adopted" in events_of(store, jid))
    real_poll = ex.poll
    reported: list[ExecutorEvent] = []

    def poll() -> list[ExecutorEvent]:
        if reported:
            return real_poll()
        # its node is lost, as the Ray executor reports it: the workers are gone (here: stopped, and
        # the stop's own event dropped) and the attempt ends lost
        ex.stop(jid, "node lost", 0.0)
        events: list[ExecutorEvent] = []
        deadline = time.monotonic() + 10
        while jid in ex.running():
            assert time.monotonic() < deadline, "the stopped workers never ended"
            events += [e for e in real_poll() if e.job_id != jid]
            time.sleep(0.02)
        reported.append(ExecutorEvent(jid, 1, EventKind.LOST, time.monotonic(), None, "node local-0 was lost"))
        return [*events, reported[0]]

    monkeypatch.setattr(ex, "poll", poll)
    until(second, lambda: job_state(store, jid)[1] == 2)  # it runs again, as attempt 2
    with store.session(readonly=True) as s:
        first_attempt = JobRepository(s).attempts(jid)[0]
        assert (first_attempt.outcome, first_attempt.exit_code) == (AttemptOutcome.LOST, None)
    assert "lost" in events_of(store, jid)
    ex.shutdown(grace_s=0.1)


def events_of(store: Store, job_id: str) -> list[str]:
    with store.session(readonly=True) as s:
        return [e.kind for e in JobRepository(s).events(job_id)]


def test_a_job_that_ended_while_no_controller_ran_keeps_its_recorded_outcome(store: Store, tmp_path: Path) -> None:
    first = controller(store, executor(tmp_path), tmp_path, holder="first", ttl_s=1.0)
    marker = tmp_path / "runs.txt"
    jid = submit(store, f"open({str(marker)!r}, 'a').write('x'); raise SystemExit(3)")
    until(first, lambda: first.executor.running().get(jid) == 1)
    # the controller dies at once; the job exits 3 while none runs (its keeper records the code)
    deadline = time.monotonic() + 20
    while not any(p.suffix == ".exit" and p.read_text().strip() for p in (tmp_path / "state").iterdir()):
        assert time.monotonic() < deadline, "the keeper never recorded the exit code"
        time.sleep(0.05)
    time.sleep(1.1)  # the old lease expires
    second = controller(store, executor(tmp_path), tmp_path, holder="second", ttl_s=1.0)
    until(second, lambda: job_state(store, jid)[0].final)
    state, attempts, _ = job_state(store, jid)
    assert (state, attempts) == (JobState.FAILED, 1)  # its real outcome: not requeued, not run again
    with store.session(readonly=True) as s:
        [attempt] = JobRepository(s).attempts(jid)
        assert (attempt.outcome, attempt.exit_code) == (AttemptOutcome.FAILED, 3)
    assert marker.read_text() == "x"


def test_a_started_job_whose_process_is_gone_after_restart_is_requeued(store: Store, tmp_path: Path) -> None:
    first = controller(store, executor(tmp_path), tmp_path, holder="first", ttl_s=1.0)
    jid = submit(store, "import time; time.sleep(60)")
    until(first, lambda: first.executor.running().get(jid) == 1)
    first.executor.shutdown(0.5)  # the machine lost the process while the controller was down
    time.sleep(1.1)
    second = controller(store, executor(tmp_path / "fresh"), tmp_path, holder="second", ttl_s=1.0)
    second.step()
    with store.session(readonly=True) as s:
        jobs = JobRepository(s)
        assert jobs.attempts(jid)[0].outcome is AttemptOutcome.LOST
    until(second, lambda: second.executor.running().get(jid) == 2)  # started again, attempt 2
    second.executor.shutdown(0.5)

