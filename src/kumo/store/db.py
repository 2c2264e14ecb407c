"""The database: one :class:`Store` per process, holding an engine and a session factory.

The default is a SQLite file in the user's data directory; ``KUMO_DATABASE_URL`` (or ``url=``)
switches to PostgreSQL (``postgresql+psycopg://user@host/db``; a bare ``postgresql://`` gets the
psycopg driver). SQLite connections run in WAL mode with foreign keys on and a busy timeout, and
every writing session starts with ``BEGIN IMMEDIATE``: SQLite's write lock serialises writers from
their first statement, so a read-then-write (the audit chain's head, a lease) cannot interleave
with another writer's. Read-only sessions start a plain deferred ``BEGIN`` and never wait.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from platformdirs import user_data_dir
from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

ENV_VAR = "KUMO_DATABASE_URL"
BUSY_TIMEOUT_MS = 10_000
_READONLY = "kumo_readonly"


def default_url() -> str:
    """``KUMO_DATABASE_URL`` if set, else ``sqlite:///<user data dir>/kumo/kumo.db``."""
    url = os.environ.get(ENV_VAR, "").strip()
    if url:
        return url
    return f"sqlite:///{Path(user_data_dir('kumo')) / 'kumo.db'}"


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``; ``postgresql://`` means the psycopg 3 driver kumo installs."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def migrations_dir() -> str:
    """The Alembic script directory shipped inside the package."""
    return str(files("kumo.store").joinpath("migrations"))


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for kumo's migrations; with ``connection``, migrations run on it."""
    config = Config()
    config.set_main_option("script_location", migrations_dir())
    if connection is not None:
        config.attributes["connection"] = connection
    return config


class Store:
    """An engine and a session factory for one database. Dispose of it when done."""

    def __init__(self, url: str | URL | None = None, *, echo: bool = False) -> None:
        self.url = normalize_url(url if url is not None else default_url())
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            _make_parent_dir(self.url)
        options: dict[str, Any] = {} if self.is_sqlite else {"pool_pre_ping": True}
        self.engine: Engine = create_engine(self.url, echo=echo, **options)
        if self.is_sqlite:
            _install_sqlite_hooks(self.engine)
        readonly = {_READONLY: True} if self.is_sqlite else {"postgresql_readonly": True}
        self._writer = sessionmaker(self.engine, expire_on_commit=False)
        self._reader = sessionmaker(self.engine.execution_options(**readonly), expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Store({self.url.render_as_string(hide_password=True)!r})"

    @property
    def dialect(self) -> str:
        """``'sqlite'`` or ``'postgresql'``."""
        return self.engine.dialect.name

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises.

        ``readonly=True`` sessions may not write (PostgreSQL refuses; on SQLite they take no
        write lock, so they must not try) and roll back at the end.
        """
        factory = self._reader if readonly else self._writer
        with factory() as session:
            if readonly:
                try:
                    yield session
                finally:
                    session.rollback()
                return
            with session.begin():
                yield session

    def upgrade(self, revision: str = "head") -> None:
        """Migrate the database up to ``revision`` (all of them by default)."""
        with self.engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)

    def downgrade(self, revision: str) -> None:
        """Migrate the database down to ``revision`` (``'base'``: drop every table)."""
        with self.engine.begin() as conn:
            command.downgrade(alembic_config(conn), revision)

    def revision(self) -> str | None:
        """The migration the database is at, or None for an empty one."""
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def _make_parent_dir(url: URL) -> None:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _install_sqlite_hooks(engine: Engine) -> None:
    in_memory = engine.url.database in (None, "", ":memory:")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # kumo issues BEGIN itself (see _begin)
        cursor = dbapi_connection.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        readonly = conn.get_execution_options().get(_READONLY, False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")
