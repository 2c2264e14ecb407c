"""Store fixtures: every test gets a fresh, migrated database on SQLite and on PostgreSQL.

SQLite: a file in the test's ``tmp_path``. PostgreSQL: ``kumo_test_<uuid>`` created through an
autocommit connection to the admin database (``KUMO_TEST_POSTGRES``, default
``host=127.0.0.1 user=postgres dbname=test``) and dropped ``WITH (FORCE)`` afterwards. Where no
PostgreSQL server answers, the PostgreSQL cases are skipped, saying so.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from kumo.store import Store, TenancyRepository

ADMIN_DSN = os.environ.get("KUMO_TEST_POSTGRES", "host=127.0.0.1 user=postgres dbname=test")
BACKENDS = ("sqlite", "postgresql")
T0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``: the tests' clock."""
    return T0 + timedelta(seconds=seconds)


def _postgres_url(name: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(ADMIN_DSN)
    user, host = params.get("user", "postgres"), params.get("host", "127.0.0.1")
    port = params.get("port", "5432")
    return f"postgresql+psycopg://{user}@{host}:{port}/{name}"


@contextmanager
def fresh_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a new, empty database, removed afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'kumo.db'}"
        return
    name = f"kumo_test_{uuid.uuid4().hex}"
    try:
        with psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=3) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server at {ADMIN_DSN!r}: {exc}")
    try:
        yield _postgres_url(name)
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def empty_store(backend: str, tmp_path: Path) -> Iterator[Store]:
    """A store on a new database with no tables yet."""
    with fresh_database(backend, tmp_path) as url:
        store = Store(url)
        try:
            yield store
        finally:
            store.dispose()


@pytest.fixture
def store(empty_store: Store) -> Store:
    """A store on a new database migrated to head."""
    empty_store.upgrade()
    return empty_store


@dataclass(frozen=True)
class Tenancy:
    programme: str = "geniac"
    project: str = "sakura"
    other_project: str = "fuji"
    queue: str = "h200"
    other_queue: str = "h100"
    user: str = "alice"
    other_user: str = "bob"


@pytest.fixture
def tenancy(store: Store) -> Tenancy:
    """One programme with two projects, two queues and two users."""
    t = Tenancy()
    with store.session() as s:
        repo = TenancyRepository(s)
        repo.create_programme(t.programme, weight=2.0)
        repo.create_project(t.project, t.programme)
        repo.create_project(t.other_project, t.programme)
        repo.create_queue(t.queue, quota={"gpu.h200": 16})
        repo.create_queue(t.other_queue, quota={"gpu.h100": 8})
        repo.create_user(t.user)
        repo.create_user(t.other_user)
    return t
