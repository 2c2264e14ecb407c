"""Group commit of submissions: concurrent submissions are written together, each answers for
itself (a refused one leaves nothing and spares the others), and none is answered 201 before
the transaction holding it has committed."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from kumo.api.routes import jobs as routes
from kumo.api.schemas import JobSpec
from kumo.store import AuditEntry, AuditRepository, Job, JobRepository
from tests.store.conftest import T0

from .conftest import Api, principal

GOOD = {"project": "sakura", "queue": "h200", "spec": {"gpus": 1, "command": ["true"]}}


def record_groups(monkeypatch: pytest.MonkeyPatch, together: int = 0) -> list[int]:
    """The size of every group written, appended as they are written; with ``together``, the first
    group waits until that many submissions are waiting (requests whose callers authenticate
    separately would otherwise arrive a moment apart)."""
    sizes: list[int] = []
    write, write_all = routes.GroupCommit.write, routes.GroupCommit._write_all

    async def held(self: routes.GroupCommit) -> None:
        deadline = time.monotonic() + 10
        while not sizes and len(self._queue) < together and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        await write_all(self)

    def recorded(self: routes.GroupCommit, group: list[routes.Submission]) -> list[Any]:
        sizes.append(len(group))
        return write(self, group)

    monkeypatch.setattr(routes.GroupCommit, "write", recorded)
    monkeypatch.setattr(routes.GroupCommit, "_write_all", held)
    return sizes


def post_together(api: Api, calls: list[tuple[str, str, dict[str, Any]]]) -> list[httpx.Response]:
    """Every (role, path, body) at once, on one event loop, as a busy server receives them."""

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=api.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kumo") as client:
            return list(await asyncio.gather(*(
                client.post(f"/api/v1{path}", json=body, headers=api.auth(role)) for role, path, body in calls)))

    return asyncio.run(run())


def count(api: Api, model: type[Job] | type[AuditEntry]) -> int:
    with api.store.session(readonly=True) as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def audit_tail(api: Api, n: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(actor, target, data) of the last ``n`` entries, oldest first; the chain must verify."""
    with api.store.session(readonly=True) as s:
        entries = list(s.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(n)))
        assert AuditRepository(s).verify() == []
        return [(e.actor, e.target, dict(e.data)) for e in entries[::-1]]


def test_concurrent_submissions_are_written_together(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = record_groups(monkeypatch, together=10)
    jobs, audit = count(api, Job), count(api, AuditEntry)
    calls = [("member-sakura", "/jobs", GOOD)] * 7
    calls += [("member-sakura", "/jobs", {**GOOD, "array": 3}), ("pm-geniac", "/jobs", {**GOOD, "array": 2})]
    calls += [("member-sakura", "/jobs/batch", {"project": "sakura", "queue": "h200",
                                                "specs": [{"gpus": 1}, {"gpus": 2, "priority": 5}]})]
    answers = post_together(api, calls)
    assert [r.status_code for r in answers] == [201] * 10, [r.text for r in answers]
    assert sizes == [10]  # what arrives together is written together, in one transaction
    ids = [r.json()["ids"] for r in answers]
    assert [len(i) for i in ids] == [1] * 7 + [3, 2, 2]
    flat = sorted(j for i in ids for j in i)
    assert len(set(flat)) == 14 and count(api, Job) == jobs + 14
    for mine in ids:  # each submission's jobs are numbered consecutively
        seqs = [int(j[2:]) for j in mine]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    entries = audit_tail(api, 10)
    assert count(api, AuditEntry) == audit + 10  # one entry per submission, chained in order
    assert [target for _, target, _ in entries] == [f"job/{i[0]}" if len(i) == 1 else f"job/{i[0]}..{i[-1]}"
                                                    for i in sorted(ids)]  # in the order they were numbered
    assert sorted((actor, data["count"]) for actor, _, data in entries) == [("mo", 1)] * 7 + [
        ("mo", 2), ("mo", 3), ("pam", 2)]
    [batch] = [data for actor, _, data in entries if data["count"] == 2 and actor == "mo"]
    assert "spec" not in batch and batch["project"] == "sakura"  # as before: a batch's entry repeats no spec
    assert all(data["spec"] == GOOD["spec"] for _, _, data in entries if data is not batch)
    with api.store.session(readonly=True) as s:
        job = JobRepository(s).get(ids[-1][1])
        assert (job.spec, job.submitted_by.name, job.project.name) == ({"gpus": 2, "priority": 5}, "mo", "sakura")


def test_a_refused_submission_leaves_nothing_and_spares_its_group(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = record_groups(monkeypatch, together=6)
    jobs, audit = count(api, Job), count(api, AuditEntry)
    calls = [
        ("member-sakura", "/jobs", GOOD),
        ("member-sakura", "/jobs", GOOD),
        ("member-tsubame", "/jobs", GOOD),  # 403: not a member of sakura
        ("member-sakura", "/jobs", {**GOOD, "queue": "nowhere"}),  # 404
        ("member-sakura", "/jobs", {**GOOD, "spec": {"gpus": 1, "gpu_milli": 500}}),  # 422 from the store's check
        ("member-sakura", "/jobs", {**GOOD, "array": 2}),
    ]
    answers = post_together(api, calls)
    assert [r.status_code for r in answers] == [201, 201, 403, 404, 422, 201], [r.text for r in answers]
    assert sizes == [6]  # one group: the refusals did not take the others with them
    assert "jobs submit" in answers[2].json()["detail"] and "nowhere" in answers[3].json()["detail"]
    assert "gpu_milli" in answers[4].json()["detail"]
    assert count(api, Job) == jobs + 4 and count(api, AuditEntry) == audit + 3
    assert [data["count"] for _, _, data in audit_tail(api, 3)] == [1, 1, 2]


def test_a_group_that_fails_is_written_again_one_by_one(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = record_groups(monkeypatch, together=5)
    insert = JobRepository.insert

    def fails_for_groups(self: JobRepository, submissions: list[Any]) -> list[list[str]]:
        if len(submissions) > 1:
            raise OperationalError("INSERT", {}, Exception("the disk is full, say"))
        return insert(self, submissions)

    monkeypatch.setattr(JobRepository, "insert", fails_for_groups)
    jobs, audit = count(api, Job), count(api, AuditEntry)
    answers = post_together(api, [("member-sakura", "/jobs", GOOD)] * 5)
    assert [r.status_code for r in answers] == [201] * 5
    assert sizes == [5, 1, 1, 1, 1, 1]  # the group failed, then each was written alone
    assert count(api, Job) == jobs + 5 and count(api, AuditEntry) == audit + 5
    audit_tail(api, 5)  # the chain holds


def test_no_2xx_before_the_commit(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_audit(self: AuditRepository, entries: list[Any]) -> list[int]:
        raise OperationalError("INSERT", {}, Exception("the database went away"))

    monkeypatch.setattr(AuditRepository, "append_many", no_audit)
    jobs, audit = count(api, Job), count(api, AuditEntry)
    answers = post_together(api, [("member-sakura", "/jobs", GOOD)] * 3)
    assert [r.status_code for r in answers] == [503] * 3
    assert count(api, Job) == jobs and count(api, AuditEntry) == audit  # the jobs' rows were rolled back


def test_a_lone_submission_waits_for_no_one(api: Api) -> None:
    started = time.perf_counter()
    r = api.post("member-sakura", "/jobs", json=GOOD)
    assert r.status_code == 201 and r.json() == {"count": 1, "ids": ["j-000008"]}
    assert time.perf_counter() - started < 5
    gc = api.app.state.group_commit
    assert gc.groups == 1 and gc._queue == [] and gc._writer is None


# Bodies the one-pass handler of the submission routes must answer exactly as FastAPI's generic
# handling does (which a content type other than exactly application/json still gets).
BODIES = [
    b'{"project":"sakura","queue":"h200","spec":{"gpus":1,"command":["a\\u00e9"],"env":{"A":"\\u0000"}}}',
    b'{"project":"tsubame","project":"sakura","queue":"h200","spec":{"gpus":1}}',  # the last key wins
    b'\xef\xbb\xbf{"project":"sakura","queue":"h200","spec":{"gpus":1}}',
    '{"project":"sakura","queue":"h200","spec":{"gpus":1}}'.encode("utf-16"),
    b'{"project":"sakura","queue":"h200","spec":{"gpus":1,"command":["\\ud800"]}}',
    b'{"project":"sakura","queue":"h200","spec":{"gpus":1,"walltime_estimate_s":NaN}}',
    b'{"project":"sakura","queue":"h200","spec":{"gpus":1.0}}',
    b'{"project":"sakura","queue":"h200","spec":{"gpus":1},"array":100001}',
    b'{"project":"sakura","queue":"h200","spec":{"gpus":1}} x',
    b'', b'null', b'[]',
]


@pytest.mark.parametrize("path", ["/jobs", "/jobs/batch"])
def test_the_one_pass_handler_answers_as_the_generic_one(shared_api: Api, path: str) -> None:
    api = shared_api
    for body in BODIES:
        if path == "/jobs/batch":
            body = body.replace(b'"spec":{', b'"specs":[{').replace(b'}}', b'}]}', 1) if b'"spec"' in body else body
        answers = []
        for content_type in ("application/json", "application/json; charset=utf-8"):
            r = api.client.post(f"/api/v1{path}", content=body,
                                headers={**api.auth("member-sakura"), "content-type": content_type})
            if r.status_code == 201:
                [job] = [api.get("admin", f"/jobs/{i}").json() for i in r.json()["ids"][:1]]
                answers.append((201, job["project"], job["user"], job["spec"]))
            else:
                answers.append((r.status_code, r.json()["detail"]))
        assert answers[0] == answers[1], body
    r = api.client.post(f"/api/v1{path}", content=b"{}", headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["detail"]) == (401, "missing bearer token: send 'Authorization: Bearer kumo_…'")


def test_submissions_waiting_when_the_server_stops_are_answered(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    started = threading.Event()

    def slow(self: routes.GroupCommit, group: list[routes.Submission]) -> list[Any]:
        started.set()
        time.sleep(0.2)
        return [RuntimeError("not written")] * len(group)

    monkeypatch.setattr(routes.GroupCommit, "write", slow)

    async def run() -> list[BaseException | list[str]]:
        gc = routes.GroupCommit(api.store, asyncio.get_running_loop())
        sub = routes.Submission(principal("member-sakura"), "sakura", "h200", JobSpec(gpus=1), 1, T0, None)
        waiting = [asyncio.ensure_future(gc.submit(sub)) for _ in range(3)]
        while not started.is_set():
            await asyncio.sleep(0.005)
        assert gc._writer is not None
        gc._writer.cancel()  # as when the server shuts down
        return list(await asyncio.gather(*waiting, return_exceptions=True))

    answers = asyncio.run(run())
    assert all(isinstance(a, RuntimeError) and "stopped" in str(a) for a in answers), answers



@pytest.mark.parametrize("path", ["/jobs", "/jobs/batch"])
def test_the_submission_routes_take_the_one_pass_handler(api: Api, path: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = routes.get_principal

    async def counted(request: Any, credentials: Any) -> Any:
        calls.append(request.headers["content-type"])
        return await real(request, credentials)

    monkeypatch.setattr(routes, "get_principal", counted)  # only the one-pass handler looks it up here
    body = GOOD if path == "/jobs" else {"project": "sakura", "queue": "h200", "specs": [GOOD["spec"]]}
    for content_type in ("application/json", "application/json; charset=utf-8"):
        r = api.client.post(f"/api/v1{path}", json=body, headers={**api.auth("member-sakura"),
                                                                   "content-type": content_type})
        assert r.status_code == 201, r.text
    assert calls == ["application/json"]
