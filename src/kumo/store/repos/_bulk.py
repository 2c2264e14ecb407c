"""Fast multi-row inserts for rows that share most of their values (a bulk submission).

SQLAlchemy's executemany converts every value of every row through its column type (JSON
encoding, datetime formatting, enum checks). Rows built from one template share those values as
the very same objects, so :func:`insert_rows` converts each distinct object once, with the
column's own bind processor, and hands the driver the statement SQLAlchemy compiled for the
dialect. The result is byte for byte what an ordinary insert would write.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from kumo.store.models import Base

Converter = Callable[[Any], Any]


def insert_rows(session: Session, model: type[Base], rows: Sequence[dict[str, Any]]) -> None:
    """``INSERT`` every row (each a value for every column of ``model``'s table) in one executemany."""
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    table = model.__table__
    compiled = insert(model).compile(dialect=dialect)
    convert = {column.key: _memoized(column.type.dialect_impl(dialect), dialect) for column in table.columns}
    if compiled.positional:
        order = list(compiled.positiontup or ())
        params: list[Any] = [tuple(convert[key](row[key]) for key in order) for row in rows]
    else:
        params = [{key: convert[key](value) for key, value in row.items()} for row in rows]
    connection.exec_driver_sql(compiled.string, params)


def _memoized(type_: Any, dialect: Dialect) -> Converter:
    process = type_.bind_processor(dialect)
    if process is None:
        return _identity
    seen: dict[int, tuple[Any, Any]] = {}  # id -> (value kept alive, so the id stays its own; converted)

    def convert(value: Any) -> Any:
        hit = seen.get(id(value))
        if hit is None:
            hit = seen[id(value)] = (value, process(value))
        return hit[1]

    return convert


def _identity(value: Any) -> Any:
    return value
