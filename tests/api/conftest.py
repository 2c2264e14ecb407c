"""API fixtures: a seeded store on SQLite and on PostgreSQL, and a ``TestClient`` over ``create_app``.

The seed (``seed``): programmes ``geniac`` and ``univ``; projects ``sakura`` (geniac) and
``tsubame`` (univ); queue ``h200``; cluster ``east`` (japan-east) with nodes ``east-0`` and
``east-1``; one user per role, each with a token; and jobs:

- ``j-000001``-``j-000003``: sakura, pending (mo); ``j-000004``-``j-000005``: tsubame, pending (tom);
- ``j-000006``: sakura, running since T0+60 s on 2 GPUs of east-0, with a log ``hello\\n``;
- ``j-000007``: tsubame, succeeded after one hour on 2 GPUs.

The clock stands at T0 + 2 h unless a test moves it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from kumo.api.app import create_app
from kumo.api.authz import Grant, Principal
from kumo.api.authz import Role as AuthzRole
from kumo.executors.base import log_path
from kumo.store import (
    AuditEntry,
    Job,
    JobRepository,
    LeaseRepository,
    NodeRepository,
    Store,
    TenancyRepository,
    TokenRepository,
)
from tests.store.conftest import BACKENDS, T0, fresh_database

V1 = "/api/v1"
# role -> (user, grant as (role, programme, project))
ROLES: dict[str, tuple[str, tuple[str, str | None, str | None]]] = {
    "admin": ("ada", ("admin", None, None)),
    "viewer": ("vic", ("viewer", None, None)),
    "pm-geniac": ("pam", ("programme_manager", "geniac", None)),
    "member-sakura": ("mo", ("member", None, "sakura")),
    "member-tsubame": ("tom", ("member", None, "tsubame")),
}
RUNNING, SUCCEEDED = "j-000006", "j-000007"
PROJECTS = {"sakura": "geniac", "tsubame": "univ"}


def principal(role: str) -> Principal:
    """The role's principal, as the API builds it (for ``authz.allowed`` in the tests)."""
    user, (name, programme, project) = ROLES[role]
    return Principal(user, (Grant(AuthzRole(name), programme, project),))


class Clock:
    """A settable clock for the app."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Api:
    app: FastAPI
    client: TestClient
    store: Store
    clock: Clock
    log_dir: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def call(self, role: str | None, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**kwargs.pop("headers", {}), **(self.auth(role) if role else {})}
        url = path if path.startswith(("/api/", "/healthz", "/metrics", "/docs", "/openapi")) else V1 + path
        return self.client.request(method, url, headers=headers, **kwargs)

    def get(self, role: str | None, path: str, **kwargs: Any) -> httpx.Response:
        return self.call(role, "GET", path, **kwargs)

    def post(self, role: str | None, path: str, **kwargs: Any) -> httpx.Response:
        return self.call(role, "POST", path, **kwargs)

    def delete(self, role: str | None, path: str, **kwargs: Any) -> httpx.Response:
        return self.call(role, "DELETE", path, **kwargs)

    def count(self, model: type[Job] | type[AuditEntry]) -> int:
        with self.store.session(readonly=True) as s:
            return int(s.scalar(select(func.count()).select_from(model)) or 0)


def seed(store: Store, log_dir: Path) -> dict[str, str]:
    """Fill a migrated store (see the module docstring); returns each role's token."""
    tokens: dict[str, str] = {}
    with store.session() as s:
        t = TenancyRepository(s)
        t.create_programme("geniac", weight=2.0)
        t.create_programme("univ")
        t.create_project("sakura", "geniac")
        t.create_project("tsubame", "univ")
        t.create_queue("h200", quota={"gpu.h200": {"nominal": 16, "borrowing_limit": 8}})
        nodes = NodeRepository(s)
        nodes.create_cluster("east", "japan-east")
        for i in range(2):
            nodes.register(f"east-{i}", cluster="east", gpu_model="h200", gpus=8, now=T0)
        for role, (user, (name, programme, project)) in ROLES.items():
            t.create_user(user)
            t.add_membership(user, name, programme=programme, project=project)
            tokens[role] = TokenRepository(s).create(user, "test", now=T0)[1]
        jobs = JobRepository(s)
        spec = {"gpus": 2, "command": ["python", "train.py"]}
        jobs.submit_many("sakura", "h200", "mo", [spec] * 3, now=T0)
        jobs.submit_many("tsubame", "h200", "tom", [spec] * 2, now=T0)
        jobs.submit("sakura", "h200", "mo", spec, now=T0)
        jobs.submit("tsubame", "h200", "tom", spec, now=T0)
    _run(store, log_dir)
    return tokens


def _run(store: Store, log_dir: Path) -> None:
    placement = {"model": "h200", "region": "japan-east",
                 "workers": [{"rank": 0, "node": "east-0", "gpus": [0, 1], "gpu_milli": 1000}]}
    with store.session() as s:
        token = LeaseRepository(s).acquire("controller", "test", ttl_s=3600, now=T0)
        assert token is not None
        jobs = JobRepository(s)
        jobs.start_attempt(SUCCEEDED, 1, placement, token, now=T0)
        jobs.end_attempt(SUCCEEDED, 2, "succeeded", now=T0 + timedelta(hours=1), exit_code=0)
        jobs.start_attempt(RUNNING, 1, placement, token, now=T0 + timedelta(seconds=60))
        jobs.add_event(RUNNING, "started", "placed on h200 in japan-east: east-0", now=T0 + timedelta(seconds=60))
    path = log_path(log_dir, RUNNING, 1, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("hello\n")


@contextmanager
def seeded_api(backend: str, tmp_path: Path) -> Iterator[Api]:
    """A seeded store on a fresh ``backend`` database and a client of the app over it."""
    with fresh_database(backend, tmp_path) as url:
        store = Store(url)
        try:
            store.upgrade()
            log_dir = tmp_path / "logs"
            tokens = seed(store, log_dir)
            clock = Clock(T0 + timedelta(hours=2))
            app = create_app(store, log_dir=log_dir, clock=clock)
            app.state.log_poll_s = 0.02
            with TestClient(app) as client:
                yield Api(app, client, store, clock, log_dir, tokens)
        finally:
            store.dispose()


@pytest.fixture(params=BACKENDS)
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    """A fresh seeded API for one test."""
    with seeded_api(str(request.param), tmp_path) as made:
        yield made


@pytest.fixture(scope="module", params=BACKENDS)
def shared_api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One seeded API for a whole module whose tests each touch only their own rows (or none)."""
    with seeded_api(str(request.param), tmp_path_factory.mktemp("api")) as made:
        yield made


def registered_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path template) the app answers, walking ``app.routes`` (HEAD aside)."""
    try:  # FastAPI >= 0.160 keeps included routers as such; this flattens them
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - older FastAPI flattens app.routes itself
        routes: list[Any] = list(app.routes)
    else:
        routes = list(iter_route_contexts(app.routes))
    return {(method, route.path) for route in routes for method in (route.methods or ()) if method != "HEAD"}
