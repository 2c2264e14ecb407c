"""The authorization matrix: every route x every role, allowed or denied as ``authz.allowed`` says.

Each row names a route (method and path template, as registered), the action it checks and the
programme/project it touches; the expected answer is derived from :mod:`kumo.api.authz`, never
written by hand: allowed -> 2xx; denied -> 403; a job the role may not even read -> 404, as if it did
not exist. Every route registered on the app must have a row, so a new route without one fails.
Anonymous requests get 401 on every route but the public ones. A grant or grant request the role
may not read answers 404 like a job (``reads``); ``{g:sakura}``-style placeholders name the grants
and requests the ``extras`` fixture made for each role (a JSON value that is only a placeholder
becomes the integer id).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from kumo.api import authz
from kumo.executors.base import log_path
from kumo.store import GrantRepository, TenancyRepository, TokenRepository
from tests.store.conftest import T0

from .conftest import PROJECTS, ROLES, RUNNING, SUCCEEDED, V1, Api, principal, registered_routes


@dataclass(frozen=True)
class Row:
    method: str
    template: str  # as registered, without the /api/v1 prefix for API routes
    action: str | None  # None: a public route, no token needed
    path: str = ""  # the concrete path ("{r}": the role, "{own}": the role's spare token); default: template
    programme: str | None = None
    project: str | None = None
    body: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    listing: bool = False  # filtered by authz.visible_projects instead of refused
    job: bool = False  # a job route: a job the role may not read answers 404
    reads: str | None = None  # the action without which the target answers 404 (``job`` means jobs.read)

    @property
    def route(self) -> tuple[str, str]:
        public = self.template.startswith(("/healthz", "/metrics", "/docs", "/openapi"))
        return self.method, self.template if public else V1 + self.template


def job_rows(method: str, suffix: str, action: str, sakura: str = RUNNING, tsubame: str = SUCCEEDED) -> list[Row]:
    """The route for a job of sakura (geniac) and one of tsubame (univ)."""
    return [Row(method, "/jobs/{job_id}" + suffix, action, f"/jobs/{job}{suffix}", programme, project, job=True)
            for job, programme, project in ((sakura, "geniac", "sakura"), (tsubame, "univ", "tsubame"))]


def grant_rows(method: str, suffix: str, action: str, key: str, template: str = "/grants/{grant_id}",
               body: Any = None, **extra: Any) -> list[Row]:
    """The route for a grant (or request: ``template``) of sakura and one of tsubame, made per role."""
    base = template.split("/{")[0]
    return [Row(method, template + suffix, action, f"{base}/{{{key}:{project}}}{suffix}", programme, project,
                body=body, reads="grants.read", **extra)
            for programme, project in (("geniac", "sakura"), ("univ", "tsubame"))]


def request_rows(method: str, suffix: str, action: str, key: str, body: Any = None) -> list[Row]:
    return grant_rows(method, suffix, action, key, "/grant-requests/{request_id}", body)


PERIOD = {"since": "2025-04-01T00:00:00Z", "until": "2025-05-01T00:00:00Z"}
RATE = {"effective_from": "2026-01-01T00:00:00Z", "currency": "JPY",
        "prices": [{"flavor": "gpu.h200", "tier": "guaranteed", "price": "1200"}]}
TERMS = {"amount": "1000", "unit": "JPY", "start": "2025-04-01T00:00:00Z", "end": "2025-05-01T00:00:00Z"}
SUBMIT = {"queue": "h200", "spec": {"gpus": 1}}
BATCH = {"queue": "h200", "specs": [{"gpus": 1}]}
ROWS: list[Row] = [
    Row("GET", "/regions", "regions.read"),
    Row("GET", "/clusters", "clusters.read"),
    Row("POST", "/clusters", "clusters.write", body={"name": "c-{r}", "region": "japan-west"}),
    Row("GET", "/nodes", "nodes.read", params={"gpu_model": "h200"}),
    Row("POST", "/nodes", "nodes.write", body={"name": "n-{r}", "cluster": "east", "gpu_model": "h200", "gpus": 8}),
    Row("POST", "/nodes/{name:path}/cordon", "nodes.write", "/nodes/east-0/cordon"),
    Row("POST", "/nodes/{name:path}/uncordon", "nodes.write", "/nodes/east-0/uncordon"),
    Row("POST", "/nodes/{name:path}/drain", "nodes.write", "/nodes/east-1/drain"),
    Row("GET", "/programmes", "programmes.read"),
    Row("POST", "/programmes", "programmes.write", body={"name": "p-{r}"}),
    Row("GET", "/projects", "projects.read"),
    Row("POST", "/projects", "projects.write", programme="geniac", body={"name": "g-{r}", "programme": "geniac"}),
    Row("POST", "/projects", "projects.write", programme="univ", body={"name": "u-{r}", "programme": "univ"}),
    Row("GET", "/cohorts", "queues.read"),
    Row("POST", "/cohorts", "queues.write", body={"name": "co-{r}"}),
    Row("GET", "/queues", "queues.read"),
    Row("POST", "/queues", "queues.write", body={"name": "q-{r}"}),
    Row("POST", "/users", "users.write", body={"name": "user-{r}"}),
    Row("GET", "/projects/{name:path}/members", "members.read", "/projects/sakura/members", "geniac", "sakura"),
    Row("GET", "/projects/{name:path}/members", "members.read", "/projects/tsubame/members", "univ", "tsubame"),
    Row("POST", "/projects/{name:path}/members", "members.write", "/projects/sakura/members", "geniac", "sakura",
        body={"user": "cand-{r}"}),
    Row("POST", "/projects/{name:path}/members", "members.write", "/projects/tsubame/members", "univ", "tsubame",
        body={"user": "cand-{r}"}),
    Row("GET", "/whoami", "tokens.own"),
    Row("POST", "/tokens", "tokens.own", body={"name": "t-{r}"}),
    Row("POST", "/tokens", "tokens.write", body={"name": "t-{r}", "user": "victim"}),
    Row("GET", "/tokens", "tokens.own"),
    Row("GET", "/tokens", "tokens.write", params={"user": "victim"}),
    Row("DELETE", "/tokens/{token_id}", "tokens.own", "/tokens/{own}"),
    Row("DELETE", "/tokens/{token_id}", "tokens.write", "/tokens/{victim}"),
    Row("POST", "/jobs", "jobs.submit", programme="geniac", project="sakura", body={"project": "sakura", **SUBMIT}),
    Row("POST", "/jobs", "jobs.submit", programme="univ", project="tsubame", body={"project": "tsubame", **SUBMIT}),
    Row("POST", "/jobs/batch", "jobs.submit", programme="geniac", project="sakura",
        body={"project": "sakura", **BATCH}),
    Row("POST", "/jobs/batch", "jobs.submit", programme="univ", project="tsubame",
        body={"project": "tsubame", **BATCH}),
    Row("GET", "/jobs", "jobs.read", listing=True),
    Row("GET", "/jobs", "jobs.read", programme="geniac", project="sakura", params={"project": "sakura"}),
    Row("GET", "/jobs", "jobs.read", programme="univ", project="tsubame", params={"project": "tsubame"}),
    *job_rows("GET", "", "jobs.read"),
    *job_rows("POST", "/cancel", "jobs.cancel", "j-000002", "j-000005"),
    *job_rows("GET", "/events", "jobs.read"),
    *job_rows("GET", "/why", "jobs.read"),
    *job_rows("GET", "/logs", "jobs.read"),
    Row("GET", "/usage", "usage.read", listing=True),
    Row("GET", "/usage", "usage.read", programme="geniac", project="sakura", params={"project": "sakura"}),
    Row("GET", "/usage", "usage.read", programme="univ", project="tsubame", params={"project": "tsubame"}),
    Row("GET", "/ratecard", "ratecard.read"),
    Row("POST", "/ratecard/versions", "ratecard.write", body=RATE),
    Row("GET", "/grants", "grants.read", listing=True),
    Row("GET", "/grants", "grants.read", programme="geniac", project="sakura", params={"project": "sakura"}),
    Row("GET", "/grants", "grants.read", programme="univ", project="tsubame", params={"project": "tsubame"}),
    *grant_rows("GET", "", "grants.read", "g"),
    *grant_rows("GET", "/burndown", "grants.read", "g"),
    Row("POST", "/grants", "grants.write", programme="geniac", project="sakura", body={"project": "sakura", **TERMS}),
    Row("POST", "/grants", "grants.write", programme="univ", project="tsubame", body={"project": "tsubame", **TERMS}),
    *grant_rows("POST", "/revoke", "grants.write", "revoke"),
    Row("POST", "/grant-requests", "grants.request", programme="geniac", project="sakura",
        body={"kind": "new", "project": "sakura", **TERMS}),
    Row("POST", "/grant-requests", "grants.request", programme="univ", project="tsubame",
        body={"kind": "new", "project": "tsubame", **TERMS}),
    Row("POST", "/grant-requests", "grants.request", programme="geniac", project="sakura", reads="grants.read",
        body={"kind": "topup", "grant_id": "{g:sakura}", "amount": "10"}),
    Row("POST", "/grant-requests", "grants.request", programme="univ", project="tsubame", reads="grants.read",
        body={"kind": "renewal", "grant_id": "{g:tsubame}", "new_end": "2025-06-01T00:00:00Z"}),
    Row("GET", "/grant-requests", "grants.read", listing=True),
    Row("GET", "/grant-requests", "grants.read", programme="geniac", project="sakura", params={"project": "sakura"}),
    Row("GET", "/grant-requests", "grants.read", programme="univ", project="tsubame", params={"project": "tsubame"}),
    *request_rows("POST", "/approve", "grants.decide", "approve"),
    *request_rows("POST", "/deny", "grants.decide", "deny", body={"comment": "not this year"}),
    Row("GET", "/usage/report", "reports.read", listing=True, params=PERIOD),
    Row("GET", "/usage/report", "reports.read", programme="geniac", project="sakura",
        params={**PERIOD, "project": "sakura"}),
    Row("GET", "/usage/report", "reports.read", programme="univ", project="tsubame",
        params={**PERIOD, "project": "tsubame", "format": "csv"}),
    Row("GET", "/usage/report/plot", "reports.read", listing=True, params=PERIOD),
    Row("GET", "/audit", "audit.read"),
    Row("GET", "/audit/verify", "audit.read"),
    Row("GET", "/healthz", None),
    Row("GET", "/metrics", None),
    Row("GET", "/openapi.json", None),
    Row("GET", "/docs", None),
    Row("GET", "/docs/oauth2-redirect", None),
]


def expected(row: Row, role: str) -> int | None:
    """None: allowed (any 2xx); else the status a refusal must have."""
    who = principal(role)
    if row.action is None:
        return None
    if row.listing:
        visible = authz.visible_projects(who, PROJECTS)
        return None if visible is None or visible else 403
    reads = "jobs.read" if row.job else row.reads
    if reads is not None and not authz.allowed(who, reads, row.programme, row.project):
        return 404
    return None if authz.allowed(who, row.action, row.programme, row.project) else 403


@dataclass
class Extras:
    own: dict[str, int]  # role -> a spare token of its own to revoke
    victim: int  # a token of a user no role is
    ids: dict[str, dict[str, int]]  # role -> {"revoke:sakura": grant id, "approve:tsubame": request id, ...}


@pytest.fixture(scope="module")
def extras(shared_api: Api) -> Extras:
    """What the mutating rows need per role: candidates to add as members, tokens to revoke, a log."""
    own = {}
    with shared_api.store.session() as s:
        tenancy, tokens = TenancyRepository(s), TokenRepository(s)
        for role, (user, _) in ROLES.items():
            tenancy.create_user(f"cand-{role}")
            own[role] = tokens.create(user, "spare", now=T0)[0].id
        tenancy.create_user("victim")
        victim = tokens.create("victim", "theirs", now=T0)[0].id
        tenancy.create_user("requester")
        grants = GrantRepository(s)
        grants.add_rate_version(T0, T0 + timedelta(days=60), "JPY", {("gpu.h200", "guaranteed"): 1000}, now=T0)
        terms = {"kind": "credits", "amount": 1000, "start": T0, "end": T0 + timedelta(days=30), "currency": "JPY",
                 "now": T0}
        shared = {f"g:{p}": grants.create_grant(p, created_by="ada", **terms).id for p in PROJECTS}
        ids: dict[str, dict[str, int]] = {}
        for role in ROLES:
            mine = dict(shared)
            for project in PROJECTS:
                mine[f"revoke:{project}"] = grants.create_grant(project, created_by="ada", **terms).id
                for verb in ("approve", "deny"):
                    mine[f"{verb}:{project}"] = grants.request_grant(project, requested_by="requester", **terms).id
            ids[role] = mine
    log_path(shared_api.log_dir, SUCCEEDED, 1, 0).write_text("bye\n")
    return Extras(own, victim, ids)


PLACEHOLDER = re.compile(r"\{(\w+:\w+)\}")


def fill(value: Any, role: str, extras: Extras) -> Any:
    if isinstance(value, str):
        ids = extras.ids[role]
        whole = PLACEHOLDER.fullmatch(value)
        if whole is not None:
            return ids[whole.group(1)]
        value = PLACEHOLDER.sub(lambda m: str(ids[m.group(1)]), value)
        return value.replace("{r}", role).replace("{own}", str(extras.own[role])).replace(
            "{victim}", str(extras.victim))
    if isinstance(value, dict):
        return {k: fill(v, role, extras) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, role, extras) for v in value]
    return value


def test_every_route_has_a_row(shared_api: Api) -> None:
    rows = {row.route for row in ROWS}
    routes = registered_routes(shared_api.app)
    assert sorted(routes - rows) == [], "routes without a row in the authorization matrix"
    assert sorted(rows - routes) == [], "rows for routes that do not exist"


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r.method} {r.path or r.template} {r.project or ''}".strip())
def test_matrix(shared_api: Api, extras: Extras, row: Row) -> None:
    path = row.path or row.template
    url = path if row.action is None else V1 + path
    wrong = []
    for role in ROLES:
        r = shared_api.call(role, row.method, fill(url, role, extras), json=fill(row.body, role, extras),
                            params=row.params)
        want = expected(row, role)
        ok = 200 <= r.status_code < 300 if want is None else r.status_code == want
        if not ok:
            wrong.append(f"{role}: got {r.status_code}, want {want or '2xx'}: {r.text[:200]}")
    anonymous = shared_api.call(None, row.method, fill(url, "admin", extras), json=fill(row.body, "admin", extras),
                                params=row.params)
    if row.action is not None and anonymous.status_code != 401:
        wrong.append(f"anonymous: got {anonymous.status_code}, want 401")
    if row.action is None and anonymous.status_code != 200:
        wrong.append(f"anonymous: got {anonymous.status_code} on a public route")
    assert wrong == []
