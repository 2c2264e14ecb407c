"""End to end: two controllers on one database, one leader.

A ``kumo up`` (the API and a controller) and a ``kumo controller`` share one database (PostgreSQL,
and SQLite in the shared data directory) and one ``--data-dir`` — two processes on one machine.
Only the lease holder runs jobs, each exactly once (every job records the controller that launched
it: its keeper's parent process). The leader is SIGKILLed while a job runs: once its lease expires
(``--lease-ttl 2``) the other controller takes over with a new fencing token, adopts the running
job, and runs a newly submitted one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e._server import (
    ControllerProcess,
    Server,
    alive,
    events,
    kill_all,
    lease,
    pid_writer,
    python,
    read_pid,
    submit,
    wait_for,
    wait_state,
)
from tests.store.conftest import fresh_database

FINAL = {"succeeded", "failed", "cancelled", "rejected"}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, data: Path) -> Iterator[str]:
    """A new database (PostgreSQL: skipped, saying why, where no server answers); every kumo
    process is killed before it is dropped."""
    with fresh_database(request.param, data) as url:
        try:
            yield url
        finally:
            kill_all()


def runs(path: Path) -> list[tuple[str, int]]:
    """(job id, pid of the controller that launched it) for every run recorded in ``path``."""
    lines = path.read_text().split("\n") if path.exists() else []
    return [(job, int(parent)) for job, parent in (line.split() for line in lines if line)]


def test_two_controllers_one_leader_and_failover(data: Path, database: str) -> None:
    log = data / "runs.txt"
    # a job's parent is its keeper (docs/concepts/executors.md); the keeper's parent launched it
    launcher = "open('/proc/%d/stat' % os.getppid()).read().rsplit(')', 1)[1].split()[1]"
    record = f"open({str(log)!r}, 'a').write(os.environ['KUMO_JOB_ID'] + ' ' + {launcher} + chr(10))"
    quick = {"gpus": 1, "command": python(f"import os; {record}")}

    up = Server(data, database=database)
    token = up.token
    assert token is not None
    first = wait_for("kumo up to take the lease", lambda: (held := lease(database)) and held[0] == up.holder and held)
    ctl = ControllerProcess(data, database=database)
    assert ctl.holder != up.holder

    jobs = [submit(up, token, quick) for _ in range(3)]
    for job in jobs:
        final = wait_state(up, token, job, FINAL)
        assert (final["state"], final["attempts"]) == ("succeeded", 1), final
    assert sorted(runs(log)) == sorted((job, up.pid) for job in jobs)  # each once, by the leader
    assert lease(database) == first  # the other controller never took over

    # the leader dies (SIGKILL) while a job runs; the job's process lives on
    release = data / "release"
    wait = f"{record}; any(os.path.exists({str(release)!r}) or time.sleep(0.05) for _ in range(1200))"
    long = submit(up, token, {"gpus": 1, "command": python(pid_writer(data / "long.pid", then=wait))})
    wait_state(up, token, long, {"running"})
    pid = read_pid(data / "long.pid")
    up.kill()
    assert alive(pid)

    second = wait_for("kumo controller to take over the lease",
                      lambda: (held := lease(database)) and held[0] == ctl.holder and held, timeout_s=20)
    assert second[1] == first[1] + 1  # a new term: the old leader's writes are fenced off
    # a new API server (its controller follows: the lease is held and renewed)
    front = Server(data, database=database)
    assert front.token is None  # the admin token exists already
    # same machine, same state directory: the new leader adopts the job its predecessor started
    wait_for("the running job to be adopted", lambda: "adopted" in [e["kind"] for e in events(front, token, long)])
    fresh = submit(front, token, quick)
    final = wait_state(front, token, fresh, FINAL)
    assert (final["state"], final["attempts"]) == ("succeeded", 1), final

    release.touch()
    ended = wait_state(front, token, long, FINAL)
    # adopted processes are not its children, but their keeper recorded the exit code: the job
    # succeeds, once (see test_up.py)
    assert (ended["state"], ended["attempts"]) == ("succeeded", 1), ended
    assert not alive(pid)

    ran = runs(log)
    assert Counter(job for job, _ in ran) == Counter([*jobs, long, fresh])  # every job exactly once
    assert dict(ran)[long] == up.pid and dict(ran)[fresh] == ctl.pid  # the new job: by the new leader
    assert lease(database) == second
