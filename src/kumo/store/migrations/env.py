"""Alembic's environment for kumo's store.

``Store.upgrade()`` runs it with its own connection in ``config.attributes["connection"]`` (so an
in-memory or temporary SQLite database is migrated on the connection that will use it); without
one it opens a :class:`~kumo.store.db.Store` on ``sqlalchemy.url``, else on ``KUMO_DATABASE_URL``
or the default SQLite file. SQLite gets batch mode, since it cannot alter most of a table in place.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from kumo.store.models import Base

config = context.config
target_metadata = Base.metadata


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    from kumo.store.db import default_url

    url = config.get_main_option("sqlalchemy.url") or default_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    from kumo.store.db import Store

    store = Store(config.get_main_option("sqlalchemy.url") or None)
    try:
        with store.engine.begin() as conn:
            _migrate(conn)
    finally:
        store.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
