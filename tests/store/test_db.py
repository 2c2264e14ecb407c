"""The Store: URLs, SQLite pragmas, sessions as transactions, read-only sessions, UTC datetimes."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, text

from kumo.core.errors import InvalidValueError, KumoError
from kumo.store import ENV_VAR, Programme, Store, StoreError, TenancyRepository, default_url
from kumo.store.db import BUSY_TIMEOUT_MS, normalize_url
from kumo.store.errors import ConflictError, FencedError, NotFoundError, StaleWriteError
from kumo.store.models import Lease

from .conftest import T0


def test_default_url_is_a_sqlite_file_in_the_user_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr("kumo.store.db.user_data_dir", lambda app: str(tmp_path / "data" / app))
    assert default_url() == f"sqlite:///{tmp_path / 'data' / 'kumo' / 'kumo.db'}"


def test_kumo_database_url_switches_the_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "postgresql+psycopg://kumo@db.example/kumo")
    assert default_url() == "postgresql+psycopg://kumo@db.example/kumo"
    store = Store()
    assert store.dialect == "postgresql"
    assert repr(store) == "Store('postgresql+psycopg://kumo@db.example/kumo')"
    store.dispose()


def test_bare_postgresql_urls_get_the_psycopg_driver() -> None:
    assert normalize_url("postgresql://u:secret@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"
    assert repr(Store("postgresql://u:secret@h/db")) == "Store('postgresql+psycopg://u:***@h/db')"


def test_sqlite_file_gets_its_directory_and_pragmas(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'deep' / 'er' / 'kumo.db'}")
    try:
        assert (tmp_path / "deep" / "er").is_dir()
        with store.session() as s:
            pragma = {name: s.execute(text(f"PRAGMA {name}")).scalar() for name in ("journal_mode", "foreign_keys")}
            assert pragma == {"journal_mode": "wal", "foreign_keys": 1}
            assert s.execute(text("PRAGMA busy_timeout")).scalar() == BUSY_TIMEOUT_MS
    finally:
        store.dispose()


def test_in_memory_sqlite_migrates_on_its_own_connection() -> None:
    store = Store("sqlite://")
    store.upgrade()
    with store.session() as s:
        TenancyRepository(s).create_programme("geniac")
    with store.session() as s:
        assert [p.name for p in TenancyRepository(s).list_programmes()] == ["geniac"]
    store.dispose()


def test_a_session_commits_on_success_and_rolls_back_on_error(store: Store) -> None:
    with store.session() as s:
        TenancyRepository(s).create_programme("kept")
    with pytest.raises(RuntimeError, match="boom"), store.session() as s:
        TenancyRepository(s).create_programme("lost")
        raise RuntimeError("boom")
    with store.session(readonly=True) as s:
        assert list(s.scalars(select(Programme.name))) == ["kept"]


def test_a_readonly_session_reads_and_leaves_nothing_behind(store: Store) -> None:
    with store.session() as s:
        TenancyRepository(s).create_programme("geniac")
    with store.session(readonly=True) as s:
        assert TenancyRepository(s).get_programme("geniac").weight == 1.0
        if store.dialect == "postgresql":
            with pytest.raises(Exception, match="read-only"):
                TenancyRepository(s).create_programme("refused")
        else:
            TenancyRepository(s).create_programme("rolled-back")
    with store.session() as s:
        assert [p.name for p in TenancyRepository(s).list_programmes()] == ["geniac"]


def test_readers_do_not_wait_for_a_writer(store: Store) -> None:
    with store.session() as s:
        TenancyRepository(s).create_programme("geniac")
    seen: list[list[str]] = []

    def read() -> None:
        with store.session(readonly=True) as r:
            seen.append([p.name for p in TenancyRepository(r).list_programmes()])

    with store.session() as s:
        TenancyRepository(s).create_programme("uncommitted")
        reader = threading.Thread(target=read)
        started = time.monotonic()
        reader.start()
        reader.join(timeout=5)
        assert time.monotonic() - started < 2
    assert seen == [["geniac"]]


def test_datetimes_come_back_timezone_aware_in_utc(store: Store) -> None:
    tokyo = timezone(timedelta(hours=9))
    with store.session() as s:
        s.add(Lease(name="l", holder="h", token=1, expires_at=datetime(2025, 4, 1, 18, 30, 0, 123456, tzinfo=tokyo)))
    with store.session() as s:
        lease = s.get(Lease, "l")
        assert lease is not None
        assert lease.expires_at == datetime(2025, 4, 1, 9, 30, 0, 123456, tzinfo=UTC)
        assert lease.expires_at.tzinfo is UTC


def test_naive_datetimes_are_refused(store: Store) -> None:
    from kumo.store import LeaseRepository

    with store.session() as s, pytest.raises(InvalidValueError, match="timezone-aware"):
        LeaseRepository(s).acquire("leader", "a", 10, now=T0.replace(tzinfo=None))


def test_store_errors_belong_to_kumos_hierarchy() -> None:
    for error in (
        NotFoundError("job", "j-000001"),
        ConflictError("x"),
        StaleWriteError("job", "j-1", 1, 2),
        FencedError("leader", 1, "y"),
    ):
        assert isinstance(error, StoreError)
        assert isinstance(error, KumoError)
    assert str(NotFoundError("job", "j-000001")) == "job 'j-000001' not found"
    assert str(StaleWriteError("job", "j-000001", 3, 4)) == (
        "job 'j-000001' was changed by another writer: expected version 3, found 4; reload it and retry"
    )
    fenced = FencedError("leader", 2, "the term expired")
    assert str(fenced) == "lease 'leader': token 2 is fenced off: the term expired"
