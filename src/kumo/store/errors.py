"""Errors raised by the store. They extend kumo's one hierarchy (:mod:`kumo.core.errors`).

Hierarchy::

    KumoError
     └── StoreError              a database operation that cannot be done as asked
          ├── NotFoundError       no row of that kind with that name or id
          ├── ConflictError       a name already taken, or a change the row's state forbids
          ├── StaleWriteError     optimistic concurrency: the row's version moved since it was read
          ├── FencedError         a writer whose lease token is no longer the current one
          └── ForbiddenError      a rule about who may do it forbids it (approving one's own request)

Bad arguments (a negative weight, an unknown spec field, a naive datetime) raise
:class:`kumo.core.errors.InvalidValueError`, as the core's constructors do.
"""

from __future__ import annotations

from kumo.core.errors import KumoError


class StoreError(KumoError):
    """Base class of the store's errors."""


class NotFoundError(StoreError, LookupError):
    """No row of ``kind`` is known by ``key``."""

    def __init__(self, kind: str, key: object) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key!r} not found")


class ConflictError(StoreError):
    """The write conflicts with what is stored: a duplicate name, or a state that forbids it."""


class StaleWriteError(StoreError):
    """A row changed between the read and the write; reload it and decide again."""

    def __init__(self, kind: str, key: object, expected: int, actual: int) -> None:
        self.kind = kind
        self.key = key
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{kind} {key!r} was changed by another writer: expected version {expected}, "
            f"found {actual}; reload it and retry"
        )


class FencedError(StoreError):
    """A lease token is not (or no longer) the current one, so its holder may not write."""

    def __init__(self, lease: str, token: int, why: str) -> None:
        self.lease = lease
        self.token = token
        self.why = why
        super().__init__(f"lease {lease!r}: token {token} is fenced off: {why}")


class ForbiddenError(StoreError):
    """``actor`` may not do this, whatever their roles: a rule of the store forbids it (a person
    approving or denying their own grant request). An API answers it with 403."""

    def __init__(self, actor: str, why: str) -> None:
        self.actor = actor
        self.why = why
        super().__init__(f"{actor!r} may not {why}")
