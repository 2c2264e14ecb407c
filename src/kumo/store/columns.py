"""Column types and JSON shapes the models share.

:class:`UTCDateTime` keeps every datetime timezone-aware and in UTC on both databases (SQLite
stores it naive, in UTC); :func:`str_enum` stores an enum by value in a plain string column (not a
native database enum, so adding a state needs no type migration); quotas are stored as
``{flavor: {"nominal", "borrowing_limit", "lending_limit"}}``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Dialect, Enum, TypeDecorator

from kumo.core import model as core
from kumo.core.errors import InvalidValueError


def as_utc(value: datetime, what: str = "datetime") -> datetime:
    """``value`` in UTC; a naive datetime is refused (kumo never guesses a time zone)."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidValueError(what, f"must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        utc = as_utc(value)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def str_enum(cls: type[enum.Enum]) -> Enum:
    """A string column holding the enum's values."""
    return Enum(
        cls,
        native_enum=False,
        length=32,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


def quota_json(quota: Mapping[str, Any] | None) -> dict[str, dict[str, float | None]]:
    """``{flavor: {"nominal", "borrowing_limit", "lending_limit"}}`` from numbers, core ``Quota``
    values or such dicts, checked as the core checks a queue's quota."""
    quotas: dict[str, core.Quota] = {}
    for flavor, value in (quota or {}).items():
        quotas[flavor] = core.Quota(**value) if isinstance(value, Mapping) else value
    checked = core.Queue("quota", quota=quotas).quotas()
    return {
        flavor: {"nominal": q.nominal, "borrowing_limit": q.borrowing_limit, "lending_limit": q.lending_limit}
        for flavor, q in checked.items()
    }


def quotas_from_json(data: Mapping[str, Mapping[str, Any]]) -> dict[str, core.Quota]:
    return {flavor: core.Quota(**q) for flavor, q in data.items()}
