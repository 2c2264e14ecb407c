"""Jobs through the API: submit (one, arrays, batches), list with cursors, get, cancel, events, why, logs."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from kumo.executors.base import log_path
from kumo.store import AuditEntry, Job, JobRepository
from tests.store.conftest import T0

from .conftest import RUNNING, SUCCEEDED, Api

SAKURA = ["j-000001", "j-000002", "j-000003", RUNNING]
TSUBAME = ["j-000004", "j-000005", SUCCEEDED]


def submit(api: Api, role: str = "member-sakura", project: str = "sakura", **body: object) -> list[str]:
    r = api.post(role, "/jobs", json={"project": project, "queue": "h200", "spec": {"gpus": 1}, **body})
    assert r.status_code == 201, r.text
    ids: list[str] = r.json()["ids"]
    assert r.json()["count"] == len(ids)
    return ids


def every_page(api: Api, role: str, limit: int, **params: object) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        query = {"limit": limit, **params, **({"cursor": cursor} if cursor else {})}
        r = api.get(role, "/jobs", params=query)
        assert r.status_code == 200, r.text
        assert len(r.json()["items"]) <= limit
        seen += [job["id"] for job in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return seen


def test_submit_one_job_and_read_it_back(api: Api) -> None:
    audited = api.count(AuditEntry)
    spec = {"workers": 2, "gpus": 8, "priority": 5, "command": ["torchrun", "train.py"], "env": {"SEED": "1"}}
    r = api.post("member-sakura", "/jobs", json={"project": "sakura", "queue": "h200", "spec": spec})
    assert r.status_code == 201 and r.json() == {"count": 1, "ids": ["j-000008"]}
    job = api.get("member-sakura", "/jobs/j-000008").json()
    assert {k: job[k] for k in ("id", "project", "programme", "queue", "user", "state", "spec", "attempts")} == {
        "id": "j-000008", "project": "sakura", "programme": "geniac", "queue": "h200", "user": "mo",
        "state": "pending", "spec": spec, "attempts": 0,
    }  # fmt: skip
    assert job["submit_time"] == "2025-04-01T11:00:00Z" and job["cancel_requested"] is False
    assert api.count(AuditEntry) == audited + 1


def test_an_array_submits_copies_in_one_transaction(api: Api) -> None:
    ids = submit(api, role="pm-geniac", array=5)
    assert ids == [f"j-{n:06d}" for n in range(8, 13)]
    page = api.get("admin", "/jobs", params={"user": "pam"}).json()["items"]
    assert [job["id"] for job in page] == ids and {job["spec"]["gpus"] for job in page} == {1}
    entry = api.get("admin", "/audit").json()["items"][-1]
    assert (entry["action"], entry["target"], entry["actor"]) == ("jobs.submit", "job/j-000008..j-000012", "pam")
    assert entry["data"] == {"project": "sakura", "queue": "h200", "count": 5, "spec": {"gpus": 1}}


def test_an_array_of_100000_is_accepted(api: Api) -> None:
    if api.store.dialect != "sqlite":
        pytest.skip("100,000 jobs take several seconds; once, on SQLite, keeps the suite short")
    ids = submit(api, array=100_000)
    assert (len(ids), ids[0], ids[-1]) == (100_000, "j-000008", "j-100007")
    assert api.count(Job) == 7 + 100_000


def test_a_batch_submits_different_jobs(api: Api) -> None:
    specs = [{"gpus": 1, "priority": p} for p in range(4)] + [{"gpu_milli": 500, "workers": 3}]
    r = api.post("member-tsubame", "/jobs/batch", json={"project": "tsubame", "queue": "h200", "specs": specs})
    assert r.status_code == 201 and r.json()["ids"] == [f"j-{n:06d}" for n in range(8, 13)]
    got = [api.get("member-tsubame", f"/jobs/{i}").json()["spec"] for i in r.json()["ids"]]
    assert got == specs


def test_listing_pages_through_every_visible_job_exactly_once(api: Api) -> None:
    sakura = SAKURA + submit(api, array=13)
    tsubame = TSUBAME + submit(api, role="member-tsubame", project="tsubame", array=12)
    everyone = sorted(sakura + tsubame)
    for limit in (1, 4, 1000):
        assert every_page(api, "admin", limit) == everyone
    assert every_page(api, "viewer", 7) == everyone
    assert every_page(api, "member-sakura", 3) == sorted(sakura)
    assert every_page(api, "pm-geniac", 5) == sorted(sakura)
    assert every_page(api, "member-tsubame", 2) == sorted(tsubame)


def test_listing_filters(api: Api) -> None:
    def ids(role: str, **params: object) -> list[str]:
        r = api.get(role, "/jobs", params=params)
        assert r.status_code == 200, r.text
        return [job["id"] for job in r.json()["items"]]

    assert ids("admin", state="running") == [RUNNING]
    assert ids("admin", state=["running", "succeeded"]) == [RUNNING, SUCCEEDED]
    assert ids("admin", user="tom") == TSUBAME
    assert ids("member-sakura", user="tom") == []  # tom's jobs are not mo's to see
    assert ids("member-sakura", project="sakura", state="pending") == SAKURA[:3]
    assert ids("viewer", queue="h200", project="tsubame") == TSUBAME
    r = api.get("member-sakura", "/jobs", params={"project": "tsubame"})
    assert r.status_code == 403 and "member of 'tsubame'" in r.json()["detail"]
    assert api.get("admin", "/jobs", params={"project": "nope"}).status_code == 404
    assert api.get("admin", "/jobs", params={"cursor": "garbage"}).status_code == 422


def test_a_job_of_another_project_is_not_found_like_a_missing_one(api: Api) -> None:
    hidden = api.get("member-sakura", f"/jobs/{SUCCEEDED}")
    missing = api.get("member-sakura", "/jobs/j-999999")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["detail"] == f"job '{SUCCEEDED}' not found"
    assert missing.json()["detail"] == "job 'j-999999' not found"
    for suffix in ("/events", "/why", "/logs"):
        assert api.get("member-sakura", f"/jobs/{SUCCEEDED}{suffix}").status_code == 404
    assert api.get("member-tsubame", f"/jobs/{SUCCEEDED}").status_code == 200


def test_cancel_asks_the_control_loop_and_refuses_an_ended_job(api: Api) -> None:
    audited = api.count(AuditEntry)
    r = api.post("member-sakura", "/jobs/j-000001/cancel")
    assert r.status_code == 202 and r.json()["cancel_requested"] is True and r.json()["state"] == "pending"
    events = api.get("member-sakura", "/jobs/j-000001/events").json()["items"]
    assert [(e["kind"], e["message"]) for e in events] == [("cancel-requested", "cancellation asked by mo")]
    assert api.count(AuditEntry) == audited + 1
    r = api.post("member-tsubame", f"/jobs/{SUCCEEDED}/cancel")
    assert r.status_code == 409 and r.json()["detail"].endswith("has already ended (succeeded); nothing to cancel")
    assert api.post("member-tsubame", "/jobs/j-000002/cancel").status_code == 404
    r = api.post("viewer", "/jobs/j-000002/cancel")
    assert r.status_code == 403 and "may not jobs cancel" in r.json()["detail"]
    assert api.count(AuditEntry) == audited + 1  # refusals leave no trace


def test_events_and_why(api: Api) -> None:
    events = api.get("pm-geniac", f"/jobs/{RUNNING}/events").json()
    assert events["job"] == RUNNING
    assert [(e["kind"], e["at"]) for e in events["items"]] == [("started", "2025-04-01T09:01:00Z")]
    with api.store.session() as s:
        job = JobRepository(s).get("j-000002")
        JobRepository(s).transition(job.id, job.version, reason="quota: needs 16 gpu.h200; queue h200 holds 2/16")
    assert api.get("member-sakura", "/jobs/j-000002/why").json() == {
        "job": "j-000002", "state": "pending", "reason": "quota: needs 16 gpu.h200; queue h200 holds 2/16"}


def test_logs_of_an_attempt(api: Api) -> None:
    r = api.get("member-sakura", f"/jobs/{RUNNING}/logs")
    assert r.status_code == 200 and r.text == "hello\n" and r.headers["content-type"].startswith("text/plain")
    assert api.get("member-sakura", f"/jobs/{RUNNING}/logs", params={"attempt": 1, "rank": 0}).text == "hello\n"
    for params, detail in [
        ({"attempt": 2}, f"job '{RUNNING}' has no attempt 2; it has had 1"),
        ({"rank": 1}, f"no log yet for job '{RUNNING}', attempt 1, rank 1"),
    ]:
        r = api.get("member-sakura", f"/jobs/{RUNNING}/logs", params=params)
        assert (r.status_code, r.json()["detail"]) == (404, detail)
    r = api.get("member-sakura", "/jobs/j-000001/logs")
    assert (r.status_code, r.json()["detail"]) == (404, "job 'j-000001' has not started yet, so it has no logs")


def test_following_a_log_streams_until_the_attempt_ends(api: Api) -> None:
    path = log_path(api.log_dir, RUNNING, 1, 0)

    def worker() -> None:
        for i in range(3):
            time.sleep(0.05)
            with path.open("a") as f:
                f.write(f"step {i}\n")
        with path.open("a") as f:
            f.write("done")  # a last line without its newline
        with api.store.session() as s:
            JobRepository(s).end_attempt(RUNNING, 2, "succeeded", now=T0 + timedelta(hours=3), exit_code=0)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        r = api.get("member-sakura", f"/jobs/{RUNNING}/logs", params={"follow": "true"})
    finally:
        thread.join()
    assert r.status_code == 200 and r.text == "hello\nstep 0\nstep 1\nstep 2\ndone"
    # An ended attempt is followed to its end at once.
    assert api.get("member-sakura", f"/jobs/{RUNNING}/logs", params={"follow": "true"}).text.endswith("done")


def test_the_api_takes_every_field_the_store_keeps() -> None:
    from kumo.api.schemas import JobSpec
    from kumo.cli.jobs import SPEC_FIELDS as CLI_FIELDS
    from kumo.store.jobspec import SPEC_FIELDS

    assert set(JobSpec.model_fields) == set(SPEC_FIELDS) == set(CLI_FIELDS)


def test_restart_policy_and_grant_are_stored(api: Api) -> None:
    [jid] = submit(api, spec={"gpus": 1, "restart": "never", "grant": 7})
    assert api.get("member-sakura", f"/jobs/{jid}").json()["spec"] == {"gpus": 1, "restart": "never", "grant": 7}
    before = api.count(Job)
    r = api.post("member-sakura", "/jobs", json={"project": "sakura", "queue": "h200",
                                                 "spec": {"gpus": 1, "restart": "sometimes"}})
    assert r.status_code == 422 and "restart" in r.text
    r = api.post("member-sakura", "/jobs", json={"project": "sakura", "queue": "h200",
                                                 "spec": {"gpus": 1, "grant": 0}})
    assert r.status_code == 422 and "grant" in r.text
    assert api.count(Job) == before
