"""Fast multi-row inserts for rows that share most of their values (a bulk submission), and a
fast counter update.

SQLAlchemy's executemany converts every value of every row through its column type (JSON
encoding, datetime formatting, enum checks). Rows built from one template share those values as
the very same objects, so :func:`insert_rows` converts each distinct object once, with the
column's own bind processor, and hands the driver the statement SQLAlchemy compiled for the
dialect (compiled once per table and dialect). The result is byte for byte what an ordinary
insert would write.

:func:`allocate` takes numbers from a counter with a Core statement: the ORM's bulk-update
machinery costs about a millisecond per call, which a group of submissions pays twice.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, update
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler

from kumo.store.errors import NotFoundError
from kumo.store.models import Base, Counter

Converter = Callable[[Any], Any]
_COUNTERS = cast(Table, Counter.__table__)
_Prepared = tuple[SQLCompiler, dict[str, Converter | None]]  # the statement, and each column's bind processor
_prepared: weakref.WeakKeyDictionary[Dialect, dict[type[Base], _Prepared]] = weakref.WeakKeyDictionary()


_ALLOCATE = (update(_COUNTERS).where(_COUNTERS.c.name == bindparam("counter"))
             .values(value=_COUNTERS.c.value + bindparam("n")).returning(_COUNTERS.c.value))


def allocate(session: Session, counter: str, n: int) -> int:
    """Add ``n`` to ``counter`` and return the first of the ``n`` numbers taken. The row stays
    locked (on PostgreSQL; SQLite's write lock covers the whole transaction) until the transaction
    ends, so numbers are taken in commit order."""
    value = session.connection().execute(_ALLOCATE, {"counter": counter, "n": n}).scalar_one_or_none()
    if value is None:
        raise NotFoundError("counter", counter)
    return int(value) - n + 1


def insert_rows(session: Session, model: type[Base], rows: Sequence[dict[str, Any]]) -> None:
    """``INSERT`` every row (each a value for every column of ``model``'s table) in one executemany."""
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    mine = _prepared.setdefault(dialect, {})
    if model not in mine:
        processors: dict[str, Converter | None] = {
            c.key: c.type.dialect_impl(dialect).bind_processor(dialect) for c in model.__table__.columns}
        mine[model] = (insert(model).compile(dialect=dialect), processors)
    compiled, processors = mine[model]
    convert = {key: _identity if process is None else _memoized(process) for key, process in processors.items()}
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        _copy(connection, model, [[convert[key](row[key]) for key in processors] for row in rows])
        return
    if compiled.positional:
        order = list(compiled.positiontup or ())
        params: list[Any] = [tuple(convert[key](row[key]) for key in order) for row in rows]
    else:
        params = [{key: convert[key](value) for key, value in row.items()} for row in rows]
    connection.exec_driver_sql(compiled.string, params)


def _copy(connection: Connection, model: type[Base], rows: list[list[Any]]) -> None:
    """PostgreSQL: the rows through ``COPY ... FROM STDIN`` (psycopg adapts each value as it would
    for an ``INSERT``), several times faster than an executemany; a refusal is raised as the
    SQLAlchemy error an ``INSERT`` would have raised (``DataError``, ``IntegrityError``, ...)."""
    dialect = connection.dialect
    quote = dialect.identifier_preparer
    table = cast(Table, model.__table__)
    statement = (f"COPY {quote.format_table(table)} ({', '.join(quote.quote(c.name) for c in table.columns)}) "
                 "FROM STDIN")
    raw = connection.connection.driver_connection
    dbapi_error = dialect.loaded_dbapi.Error
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row(row)
    except dbapi_error as exc:
        raise DBAPIError.instance(statement, None, exc, dbapi_error, dialect=dialect) from exc


def _memoized(process: Converter) -> Converter:
    seen: dict[int, tuple[Any, Any]] = {}  # id -> (value kept alive, so the id stays its own; converted)

    def convert(value: Any) -> Any:
        hit = seen.get(id(value))
        if hit is None:
            hit = seen[id(value)] = (value, process(value))
        return hit[1]

    return convert


def _identity(value: Any) -> Any:
    return value
