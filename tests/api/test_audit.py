"""The audit log through the API: every change is audited in its transaction; the chain verifies."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from kumo.store import AuditEntry, GrantRepository
from tests.store.conftest import T0

from .conftest import RUNNING, Api, registered_routes

# (method, path template) -> (role, path, body, audited action, audited target)
MUTATIONS: dict[tuple[str, str], tuple[str, str, dict[str, Any] | None, str, str]] = {
    ("POST", "/api/v1/clusters"): ("admin", "/clusters", {"name": "west", "region": "japan-west"},
                                   "clusters.create", "cluster/west"),
    ("POST", "/api/v1/nodes"): ("admin", "/nodes", {"name": "west-0", "cluster": "west", "gpu_model": "h100",
                                                    "gpus": 8}, "nodes.register", "node/west-0"),
    ("POST", "/api/v1/nodes/{name:path}/cordon"): ("admin", "/nodes/west-0/cordon", None, "nodes.cordon",
                                                   "node/west-0"),
    ("POST", "/api/v1/nodes/{name:path}/uncordon"): ("admin", "/nodes/west-0/uncordon", None, "nodes.uncordon",
                                                     "node/west-0"),
    ("POST", "/api/v1/nodes/{name:path}/drain"): ("admin", "/nodes/west-0/drain", None, "nodes.drain",
                                                  "node/west-0"),
    ("POST", "/api/v1/programmes"): ("admin", "/programmes", {"name": "abci"}, "programmes.create",
                                     "programme/abci"),
    ("POST", "/api/v1/projects"): ("pm-geniac", "/projects", {"name": "hinoki", "programme": "geniac"},
                                   "projects.create", "project/hinoki"),
    ("POST", "/api/v1/cohorts"): ("admin", "/cohorts", {"name": "all"}, "cohorts.create", "cohort/all"),
    ("POST", "/api/v1/queues"): ("admin", "/queues", {"name": "h100", "cohort": "all"}, "queues.create",
                                 "queue/h100"),
    ("POST", "/api/v1/users"): ("admin", "/users", {"name": "kai"}, "users.create", "user/kai"),
    ("POST", "/api/v1/projects/{name:path}/members"): ("pm-geniac", "/projects/hinoki/members", {"user": "kai"},
                                                       "members.add", "project/hinoki"),
    ("POST", "/api/v1/tokens"): ("member-sakura", "/tokens", {"name": "laptop"}, "tokens.create", "token/6"),
    ("DELETE", "/api/v1/tokens/{token_id}"): ("member-sakura", "/tokens/6", None, "tokens.revoke", "token/6"),
    ("POST", "/api/v1/jobs"): ("member-sakura", "/jobs", {"project": "sakura", "queue": "h200",
                                                           "spec": {"gpus": 1}}, "jobs.submit", "job/j-000008"),
    ("POST", "/api/v1/jobs/batch"): ("member-tsubame", "/jobs/batch", {"project": "tsubame", "queue": "h200",
                                                                        "specs": [{"gpus": 1}, {"gpus": 2}]},
                                     "jobs.submit", "job/j-000009..j-000010"),
    ("POST", "/api/v1/jobs/{job_id}/cancel"): ("pm-geniac", f"/jobs/{RUNNING}/cancel", None, "jobs.cancel",
                                               f"job/{RUNNING}"),
    ("POST", "/api/v1/ratecard/versions"): ("admin", "/ratecard/versions", {
        "effective_from": "2025-04-01T00:00:00Z", "currency": "JPY",
        "prices": [{"flavor": "gpu.h200", "tier": "guaranteed", "price": "1000"}]}, "ratecard.add", "ratecard/1"),
    ("POST", "/api/v1/grants"): ("pm-geniac", "/grants", {
        "project": "sakura", "amount": "1000", "unit": "JPY", "start": "2025-04-01T00:00:00Z",
        "end": "2025-05-01T00:00:00Z"}, "grants.create", "grant/2"),  # grant 1: tom's request, made below
    ("POST", "/api/v1/grant-requests"): ("member-sakura", "/grant-requests",
                                         {"kind": "topup", "grant_id": 2, "amount": "5"}, "grants.request",
                                         "grant-request/2"),
    ("POST", "/api/v1/grant-requests/{request_id}/approve"): ("pm-geniac", "/grant-requests/2/approve",
                                                              {"comment": "ok"}, "grants.approve",
                                                              "grant-request/2"),
    ("POST", "/api/v1/grant-requests/{request_id}/deny"): ("admin", "/grant-requests/1/deny", {"comment": "no"},
                                                           "grants.deny", "grant-request/1"),
    ("POST", "/api/v1/grants/{grant_id}/revoke"): ("admin", "/grants/2/revoke", None, "grants.revoke", "grant/2"),
}
ACTORS = {"admin": "ada", "pm-geniac": "pam", "member-sakura": "mo", "member-tsubame": "tom"}


def test_every_change_is_audited_once_in_its_transaction(api: Api) -> None:
    mutating = {(m, p) for m, p in registered_routes(api.app) if m != "GET"}
    assert mutating == set(MUTATIONS), "a mutating route without an audit case (or a stale case)"
    with api.store.session() as s:  # request 1 (grant 1), for the deny case; the store writes no audit entry
        GrantRepository(s).request_grant("tsubame", "gpu_hours", 10, T0, T0 + timedelta(days=30), requested_by="tom",
                                         now=T0)
    for (method, _), (role, path, body, action, target) in MUTATIONS.items():
        before = api.count(AuditEntry)
        r = api.call(role, method, path, json=body)
        assert 200 <= r.status_code < 300, (path, r.text)
        entry = api.get("admin", "/audit", params={"after": before}).json()["items"]
        assert len(entry) == 1, path
        assert (entry[0]["action"], entry[0]["target"], entry[0]["actor"], entry[0]["remote_addr"]) == (
            action, target, ACTORS[role], "testclient")
    assert api.get("admin", "/audit/verify").json() == {"ok": True, "problems": []}


def test_reading_the_log_in_pages(api: Api) -> None:
    for name in ("a", "b", "c"):
        api.post("admin", "/programmes", json={"name": name})
    page = api.get("admin", "/audit", params={"limit": 2}).json()
    assert [e["seq"] for e in page["items"]] == [1, 2] and page["next_after"] == 2
    page = api.get("admin", "/audit", params={"after": 2, "limit": 2}).json()
    assert [e["target"] for e in page["items"]] == ["programme/c"] and page["next_after"] is None
    for role in ("viewer", "pm-geniac", "member-sakura"):
        assert api.get(role, "/audit").status_code == 403
        assert api.get(role, "/audit/verify").status_code == 403


@pytest.mark.parametrize(("tamper", "problem"), [
    ("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1", "entry 1 does not match its hash"),
    ("DELETE FROM audit_log WHERE seq = 2", "entry 2 is missing (before seq 3)"),
    ("DELETE FROM audit_log WHERE seq = 3", "entry 3 is missing (at the end)"),
])
def test_a_tampered_log_fails_verification(api: Api, tamper: str, problem: str) -> None:
    for name in ("a", "b", "c"):
        api.post("admin", "/programmes", json={"name": name})
    assert api.get("admin", "/audit/verify").json()["ok"] is True
    with api.store.session() as s:
        s.execute(text(tamper))
    report = api.get("admin", "/audit/verify").json()
    assert report["ok"] is False and [p["message"] for p in report["problems"]] == [problem]
