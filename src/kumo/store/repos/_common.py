"""What every repository shares: the session, lookups by name, unique inserts and counters."""

from __future__ import annotations

import math
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kumo.core.errors import InvalidValueError
from kumo.store.errors import ConflictError, NotFoundError
from kumo.store.models import Base

M = TypeVar("M", bound=Base)


class Repository:
    """Queries over one kind of thing, inside the caller's transaction (``store.session()``).

    Repositories flush but never commit: the caller's session decides what one transaction is.
    """

    def __init__(self, session: Session) -> None:
        self.session = session


def by_name(session: Session, model: type[M], kind: str, name: str) -> M:
    """The ``model`` row called ``name``; ``NotFoundError`` if there is none."""
    row = find_by_name(session, model, name)
    if row is None:
        raise NotFoundError(kind, name)
    return row


def find_by_name(session: Session, model: type[M], name: str) -> M | None:
    return session.scalars(select(model).where(model.__table__.c["name"] == name)).one_or_none()


def resolve(session: Session, model: type[M], kind: str, ref: M | str) -> M:
    """A row given as itself or by name."""
    return ref if isinstance(ref, model) else by_name(session, model, kind, str(ref))


def add_unique(session: Session, row: M, what: str) -> M:
    """Insert ``row``; ``ConflictError`` if a unique column (its name) is already taken."""
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError as exc:
        raise ConflictError(f"{what} already exists") from exc
    return row


def check_text(where: str, value: object, max_len: int) -> str:
    """A non-empty string without surrounding spaces or control characters, at most ``max_len`` long."""
    ok = isinstance(value, str) and value == value.strip() and 0 < len(value) <= max_len
    if not ok or any(ord(ch) < 32 for ch in str(value)):
        raise InvalidValueError(where, f"must be 1-{max_len} printable characters, got {value!r}")
    return str(value)


def check_positive(where: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise InvalidValueError(where, f"must be a positive number, got {value!r}")
    return float(value)
