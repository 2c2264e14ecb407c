"""Jobs: submission, listing with cursors, optimistic transitions, cancellation and the loop's views."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from kumo.core import model as core
from kumo.core.errors import InvalidValueError
from kumo.store import ConflictError, JobRepository, JobState, NotFoundError, StaleWriteError, Store
from kumo.store.models import Counter, Job
from kumo.store.repos._bulk import insert_rows
from kumo.store.repos.jobs import KnownNames, _job_rows

from .conftest import Tenancy, at

SPEC: dict[str, Any] = {"workers": 2, "gpus": 8, "walltime_estimate_s": 3600, "command": ["python", "train.py"]}


def submit(store: Store, t: Tenancy, n: int = 1, **where: Any) -> list[str]:
    """Submit ``n`` jobs (sakura, h200, alice unless told otherwise); their ids."""
    args = {"project": t.project, "queue": t.queue, "user": t.user, **where}
    with store.session() as s:
        repo = JobRepository(s)
        return [repo.submit(args["project"], args["queue"], args["user"], SPEC, now=at(i)).id for i in range(n)]


def jobs_counter(s: Session) -> int | None:
    return s.scalar(select(Counter.value).where(Counter.name == "jobs"))


def test_submit_stores_a_pending_job_with_its_checked_spec(store: Store, tenancy: Tenancy) -> None:
    spec = {**SPEC, "regions": ("japan-east",), "topology": core.Topology.NVLINK, "speeds": {"h200": 2}}
    with store.session() as s:
        job = JobRepository(s).submit(tenancy.project, tenancy.queue, tenancy.user, spec, now=at(0))
        assert job.id == "j-000001"
    with store.session() as s:
        job = JobRepository(s).get("j-000001")
        assert job.spec == {
            "workers": 2, "gpus": 8, "walltime_estimate_s": 3600.0, "regions": ["japan-east"], "speeds": {"h200": 2.0},
            "topology": "nvlink", "command": ["python", "train.py"],
        }  # fmt: skip
        assert (job.project.name, job.queue.name, job.submitted_by.name) == ("sakura", "h200", "alice")
        assert (job.state, job.reason, job.submit_time, job.started_at, job.ended_at) == (
            JobState.PENDING, "", at(0), None, None,
        )  # fmt: skip
        assert (job.attempts, job.attained_gpu_s, job.work_done_s, job.exit_code) == (0, 0.0, 0.0, None)
        assert (job.cancel_requested, job.version, job.seq) == (False, 1, 1)
        assert job.to_core() == core.Job(
            "j-000001", "h200", "sakura", workers=2, gpus=8, walltime_estimate_s=3600, regions=("japan-east",),
            topology=core.Topology.NVLINK, speeds={"h200": 2}, submit_time=at(0).timestamp(),
        )  # fmt: skip


def test_ids_follow_one_counter(store: Store, tenancy: Tenancy) -> None:
    assert submit(store, tenancy, 2) == ["j-000001", "j-000002"]
    with store.session() as s:
        jobs = JobRepository(s).submit_many(tenancy.project, tenancy.queue, tenancy.user, [SPEC] * 3, now=at(9))
        assert [j.id for j in jobs] == ["j-000003", "j-000004", "j-000005"]
        assert JobRepository(s).submit_many(tenancy.project, tenancy.queue, tenancy.user, [], now=at(9)) == []
        assert jobs_counter(s) == 5
    assert submit(store, tenancy) == ["j-000006"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"gpus": 1, "colour": "red"}, "unknown field.*colour"),
        ({"workers": 1}, "needs at least one GPU"),
        ({"gpus": 1, "gpu_milli": 500}, "either gpus"),
        ({"gpus": 1, "topology": "rack"}, "topology 'rack' is not one of"),
        ({"gpus": 1, "command": "python train.py"}, "command must be a non-empty list"),
        ({"gpus": 1, "env": {"SEED": 1}}, "env names and values must be strings"),
        (["gpus", 1], "must be a mapping"),
    ],
)
def test_a_bad_spec_is_refused_and_nothing_is_stored(store: Store, tenancy: Tenancy, spec: Any, message: str) -> None:
    with store.session() as s, pytest.raises(InvalidValueError, match=message):
        JobRepository(s).submit(tenancy.project, tenancy.queue, tenancy.user, spec, now=at(0))
    with store.session() as s:
        assert JobRepository(s).list() == ([], None)
        assert jobs_counter(s) == 0


def test_references_and_limits(store: Store, tenancy: Tenancy) -> None:
    with store.session() as s:
        repo = JobRepository(s)
        with pytest.raises(NotFoundError, match="project 'nope' not found"):
            repo.submit("nope", tenancy.queue, tenancy.user, SPEC, now=at(0))
        with pytest.raises(NotFoundError, match="job 'j-000009' not found"):
            repo.get("j-000009")
        with pytest.raises(InvalidValueError, match="at most 100000 jobs at once"):
            repo.submit_many(tenancy.project, tenancy.queue, tenancy.user, [SPEC] * 100_001, now=at(0))
        with pytest.raises(InvalidValueError, match="limit"):
            repo.list(limit=0)
        with pytest.raises(InvalidValueError, match="is not a cursor kumo handed out"):
            repo.list(cursor="bm90LWEtY3Vyc29y")


@pytest.mark.parametrize("limit", [1, 7, 25, 26, 1000])
def test_cursor_pages_return_every_job_exactly_once(store: Store, tenancy: Tenancy, limit: int) -> None:
    ids = submit(store, tenancy, 25)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    with store.session() as s:
        while True:
            rows, cursor = JobRepository(s).list(cursor=cursor, limit=limit)
            seen += [j.id for j in rows]
            pages += 1
            if cursor is None:
                break
    assert seen == ids
    assert pages == -(-25 // limit)


def test_jobs_submitted_between_pages_appear_later_and_once(store: Store, tenancy: Tenancy) -> None:
    first = submit(store, tenancy, 4)
    with store.session() as s:
        page1, cursor = JobRepository(s).list(limit=3)
    late = submit(store, tenancy, 2)
    with store.session() as s:
        page2, end = JobRepository(s).list(cursor=cursor, limit=3)
    assert [j.id for j in page1 + page2] == first + late
    assert end is None


def test_list_filters(store: Store, tenancy: Tenancy) -> None:
    t = tenancy
    a = submit(store, t, 2)
    b = submit(store, t, 1, project=t.other_project)
    c = submit(store, t, 1, queue=t.other_queue, user=t.other_user)
    with store.session() as s:
        repo = JobRepository(s)
        repo.transition(a[0], 1, state="running")
        repo.transition(b[0], 1, state=JobState.CANCELLED)

        def ids(**filters: Any) -> list[str]:
            return [j.id for j in repo.list(**filters)[0]]

        assert ids() == a + b + c
        assert ids(state="pending") == [a[1], *c]
        assert ids(state=["running", JobState.CANCELLED]) == [a[0], *b]
        assert ids(project=t.other_project) == b
        assert ids(queue=t.other_queue) == c
        assert ids(user=t.other_user) == c
        assert ids(project=t.project, state="pending") == [a[1], *c]
        with pytest.raises(NotFoundError, match="user 'carol' not found"):
            ids(user="carol")


def test_transition_raises_the_version_and_refuses_stale_writers(store: Store, tenancy: Tenancy) -> None:
    (job_id,) = submit(store, tenancy)
    with store.session(readonly=True) as s:
        seen = JobRepository(s).get(job_id).version  # a reader decides, with version 1 in hand ...
    with store.session() as s:
        job = JobRepository(s).transition(job_id, 1, reason="quota: needs 16 gpu.h200")  # ... another writes first
        assert (job.version, job.reason) == (2, "quota: needs 16 gpu.h200")
    with store.session() as s, pytest.raises(StaleWriteError, match="expected version 1, found 2") as stale:
        JobRepository(s).transition(job_id, seen, state="running")
    assert (stale.value.expected, stale.value.actual) == (1, 2)
    with store.session() as s:
        job = JobRepository(s).get(job_id)
        assert (job.state, job.version, job.reason) == (JobState.PENDING, 2, "quota: needs 16 gpu.h200")


def test_transition_follows_the_state_machine(store: Store, tenancy: Tenancy) -> None:
    (job_id,) = submit(store, tenancy)
    with store.session() as s:
        repo = JobRepository(s)
        with pytest.raises(ConflictError, match="cannot go from pending to succeeded"):
            repo.transition(job_id, 1, state="succeeded")
        with pytest.raises(InvalidValueError, match=r"cannot change \['project_id'\]"):
            repo.transition(job_id, 1, project_id=2)
        repo.transition(job_id, 1, state="running", started_at=at(5))
        job = repo.transition(job_id, 2, state="failed", ended_at=at(9), exit_code=3, reason="exit code 3")
        assert (job.state, job.started_at, job.ended_at, job.exit_code, job.version) == (
            JobState.FAILED, at(5), at(9), 3, 3,
        )  # fmt: skip
        with pytest.raises(ConflictError, match="cannot go from failed to pending"):
            repo.transition(job_id, 3, state="pending")


def test_request_cancel(store: Store, tenancy: Tenancy) -> None:
    pending, running, done = submit(store, tenancy, 3)
    with store.session() as s:
        repo = JobRepository(s)
        repo.transition(running, 1, state="running")
        repo.transition(done, 1, state="rejected", reason="never fits")
        assert (repo.request_cancel(pending).cancel_requested, repo.get(pending).version) == (True, 2)
        assert repo.request_cancel(pending).version == 2  # asking twice changes nothing
        assert (repo.request_cancel(running).cancel_requested, repo.get(running).version) == (True, 3)
        with pytest.raises(ConflictError, match="has already ended \\(rejected\\)"):
            repo.request_cancel(done)
        with pytest.raises(NotFoundError):
            repo.request_cancel("j-999999")
    with store.session() as s:
        assert [j.cancel_requested for j in JobRepository(s).list()[0]] == [True, True, False]
        assert [j.id for j in JobRepository(s).cancel_requested()] == [pending, running]  # the ended one is not


def test_pending_and_running_views(store: Store, tenancy: Tenancy) -> None:
    ids = submit(store, tenancy, 5)
    with store.session() as s:
        repo = JobRepository(s)
        repo.transition(ids[1], 1, state="running")
        repo.transition(ids[3], 1, state="running")
        repo.transition(ids[4], 1, state="cancelled")
        assert [j.id for j in repo.pending()] == [ids[0], ids[2]]
        assert [j.id for j in repo.running()] == [ids[1], ids[3]]


@pytest.mark.parametrize("n", [100_000])
def test_bulk_submit(store: Store, tenancy: Tenancy, n: int) -> None:
    specs = [{"gpus": 1 + i % 8, "priority": i % 3, "command": ["python", "sweep.py"]} for i in range(n)]
    specs[7] = {"gpu_milli": 250, "env": {"SEED": "7"}, "command": ["python", "probe.py"]}
    started = time.perf_counter()
    with store.session() as s:
        jobs = JobRepository(s).submit_many(tenancy.project, tenancy.queue, tenancy.user, specs, now=at(0))
    elapsed = time.perf_counter() - started
    print(f"\nbulk submit of {n} jobs on {store.dialect}: {elapsed:.2f} s")
    assert len(jobs) == n
    assert [jobs[0].id, jobs[-1].id] == ["j-000001", f"j-{n:06d}"]
    assert jobs[7].spec == {"gpu_milli": 250, "env": {"SEED": "7"}, "command": ["python", "probe.py"]}
    assert jobs[9].spec == {"gpus": 2, "priority": 0, "command": ["python", "sweep.py"]}
    jobs[9].spec["command"].append("--mutated")  # the returned specs share nothing with each other
    assert jobs[17].spec["command"] == ["python", "sweep.py"]
    with store.session() as s:
        repo = JobRepository(s)
        assert repo.get("j-000008").spec == {"gpu_milli": 250, "env": {"SEED": "7"}, "command": ["python", "probe.py"]}
        job = repo.get(f"j-{n:06d}")
        assert (job.state, job.submit_time, job.version, job.project.name) == (JobState.PENDING, at(0), 1, "sakura")
        assert job.spec == {"gpus": 1 + (n - 1) % 8, "priority": (n - 1) % 3, "command": ["python", "sweep.py"]}
        page, cursor = repo.list(state="pending", limit=1000, cursor=None)
        assert len(page) == 1000
        assert cursor is not None


def test_check_then_insert_writes_several_submissions_at_once(store: Store, tenancy: Tenancy) -> None:
    submit(store, tenancy)  # j-000001
    with store.session() as s:
        repo = JobRepository(s)
        assert repo.project_scope(tenancy.project) == (tenancy.project, tenancy.programme)
        with pytest.raises(NotFoundError, match="project 'nowhere' not found"):
            repo.project_scope("nowhere")
        first = repo.check(tenancy.project, tenancy.queue, tenancy.user, [SPEC] * 3, now=at(1))
        second = repo.check(tenancy.other_project, tenancy.other_queue, tenancy.other_user,
                            [{"gpu_milli": 250}, {**SPEC, "priority": 3}], now=at(2))
        with pytest.raises(NotFoundError, match="queue 'h999' not found"):
            repo.check(tenancy.project, "h999", tenancy.user, [SPEC], now=at(3))
        with pytest.raises(InvalidValueError, match="gpu_milli"):
            repo.check(tenancy.project, tenancy.queue, tenancy.user, [{"gpus": 1, "gpu_milli": 5}], now=at(3))
        assert jobs_counter(s) == 1  # checking writes nothing
        assert first.specs[0] is first.specs[2]  # equal specs are checked once and share their dict
        assert repo.insert([first, second]) == [["j-000002", "j-000003", "j-000004"], ["j-000005", "j-000006"]]
        assert repo.insert([]) == []
        assert jobs_counter(s) == 6
    with store.session(readonly=True) as s:
        repo = JobRepository(s)
        two, five, six = repo.get("j-000002"), repo.get("j-000005"), repo.get("j-000006")
        assert (two.project.name, two.queue.name, two.submitted_by.name, two.submit_time) == (
            "sakura", "h200", "alice", at(1))
        assert (five.project.name, five.queue.name, five.submitted_by.name, five.spec) == (
            "fuji", "h100", "bob", {"gpu_milli": 250})
        assert six.spec == {**SPEC, "priority": 3}
        assert (two.state, two.version, two.spec) == (JobState.PENDING, 1, SPEC)


def test_transition_updates_the_loaded_job_and_no_other(store: Store, tenancy: Tenancy) -> None:
    ids = submit(store, tenancy, 3)
    with store.session() as s:
        repo = JobRepository(s)
        loaded = [repo.get(i) for i in ids]
        job = repo.transition(ids[1], 1, state="running", started_at=at(9), attempts=1, reason="")
        assert job is loaded[1] and (job.state, job.version, job.started_at, job.attempts) == (
            JobState.RUNNING, 2, at(9), 1)
        assert [(j.state, j.version) for j in (loaded[0], loaded[2])] == [(JobState.PENDING, 1)] * 2
        loaded[2].reason = "set directly"  # a pending change is flushed before the update, which wins
        repo.transition(ids[2], 1, reason="quota")
    with store.session(readonly=True) as s:
        repo = JobRepository(s)
        assert [(repo.get(i).state, repo.get(i).version, repo.get(i).reason) for i in ids] == [
            (JobState.PENDING, 1, ""), (JobState.RUNNING, 2, ""), (JobState.PENDING, 2, "quota")]
        assert (repo.get(ids[1]).started_at, repo.get(ids[1]).attempts) == (at(9), 1)


def test_pending_loads_what_the_loop_reads_and_the_rest_on_demand(store: Store, tenancy: Tenancy) -> None:
    ids = submit(store, tenancy, 2)
    with store.session() as s:
        repo = JobRepository(s)
        first, second = repo.pending()
        assert (first.id, first.state, first.reason, first.version, first.cancel_requested) == (
            ids[0], JobState.PENDING, "", 1, False)
        assert (second.spec, second.submit_time, second.project.name) == (SPEC, at(1), tenancy.project)
        repo.transition(first.id, first.version, reason="waiting")
        assert (first.reason, first.version) == ("waiting", 2)


def test_bulk_rows_are_written_as_single_ones_are(store: Store, tenancy: Tenancy) -> None:
    """``submit_many`` writes with ``_bulk.insert_rows`` (``COPY`` on PostgreSQL): every column
    reads back exactly as ``submit`` (an ORM insert) writes it, awkward characters included."""
    spec = {"gpus": 1, "priority": -3, "preemptible": False, "walltime_estimate_s": 1.5, "regions": ["japan-east"],
            "command": ["sh", "-c", "printf 'a\\tb\\n' \\\\ \"q\" ; echo 雲 \\\\N \\x"],
            "env": {"NULLISH": "\\N", "EMPTY": "", "TAB": "\t", "NEWLINE": "\r\n", "QUOTE": "'\""}}
    with store.session() as s:
        repo = JobRepository(s)
        one = repo.submit(tenancy.project, tenancy.queue, tenancy.user, spec, now=at(1)).id
        many = [j.id for j in repo.submit_many(tenancy.project, tenancy.queue, tenancy.user, [spec] * 2, now=at(1))]
    with store.session(readonly=True) as s:
        rows = {r.id: r for r in s.scalars(select(Job).where(Job.id.in_([one, *many])))}
        columns = [c.key for c in Job.__table__.columns if c.key not in ("id", "seq")]
        for other in many:
            assert [getattr(rows[other], c) for c in columns] == [getattr(rows[one], c) for c in columns]
        assert rows[many[1]].spec == spec


def test_a_value_the_database_refuses_raises_its_sqlalchemy_error(store: Store, tenancy: Tenancy) -> None:
    if store.dialect != "postgresql":
        pytest.skip("SQLite does not enforce column lengths")
    with store.session() as s:
        repo = JobRepository(s)
        checked = repo.check(tenancy.project, tenancy.queue, tenancy.user, [SPEC], now=at(0))
        rows = [{**r, "id": "j-" + "9" * 40} for r in _job_rows(checked, 1)]
        with pytest.raises(DataError):  # what the API answers with a 422, as for an INSERT
            insert_rows(s, Job, rows)


def test_known_names_are_kept_across_transactions_for_their_lifetime(store: Store, tenancy: Tenancy) -> None:
    now = [0.0]
    known = KnownNames(ttl_s=1.0, clock=lambda: now[0])
    with store.session() as s:
        repo = JobRepository(s, known=known.fresh())
        assert repo.project_scope(tenancy.project) == (tenancy.project, tenancy.programme)
        repo.check(tenancy.project, tenancy.queue, tenancy.user, [SPEC], now=at(0))
    with store.session() as s:  # a rename no kumo code does, to see what is remembered
        s.execute(text("UPDATE projects SET name = 'renamed' WHERE name = :p"), {"p": tenancy.project})
    now[0] = 0.99
    with store.session() as s:
        repo = JobRepository(s, known=known.fresh())
        assert repo.project_scope(tenancy.project) == (tenancy.project, tenancy.programme)  # remembered
        assert repo.insert([repo.check(tenancy.project, tenancy.queue, tenancy.user, [SPEC], now=at(1))]) == [
            ["j-000001"]]
    now[0] = 1.0
    with store.session() as s:
        repo = JobRepository(s, known=known.fresh())
        with pytest.raises(NotFoundError, match="project 'sakura' not found"):
            repo.project_scope(tenancy.project)
        assert repo.get("j-000001").project.name == "renamed"
