"""Leases: the leader's lease and its fencing token.

A lease is free when it has never been taken, was released, or expired. Taking a free lease
starts a new term: the token goes up by one. Renewing keeps the token. A leader calls
:meth:`LeaseRepository.check` inside the transaction that carries its writes; if another holder
has taken over (a newer token) or the lease expired, ``check`` raises ``FencedError`` and the
writes roll back. ``check`` holds the lease row (``FOR SHARE`` on PostgreSQL, SQLite's write lock),
so a takeover waits until the checked transaction has ended.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from kumo.store.columns import as_utc
from kumo.store.errors import FencedError
from kumo.store.models import NAME, Lease
from kumo.store.repos._common import Repository, check_positive, check_text


class LeaseRepository(Repository):
    """Acquire, renew, release and check named leases. Times come from the caller (``now``)."""

    def acquire(self, name: str, holder: str, ttl_s: float, *, now: datetime) -> int | None:
        """The lease's token if ``holder`` holds it now, else None (someone else does).

        Succeeds when the lease is free or already held by ``holder`` (a renewal, same token).
        """
        now, expires = _window(now, ttl_s)
        check_text("lease holder", holder, 255)
        lease = self._locked(name)
        if lease is None:
            return self._create(name, holder, expires)
        if lease.expires_at > now and lease.holder != holder:
            return None
        if lease.expires_at <= now:
            lease.token += 1
            lease.holder = holder
        lease.expires_at = expires
        self.session.flush()
        return lease.token

    def renew(self, name: str, token: int, ttl_s: float, *, now: datetime) -> datetime:
        """Extend the current term; returns the new expiry. ``FencedError`` if the term is over."""
        now, expires = _window(now, ttl_s)
        lease = self._current(name, token, now, self._locked(name))
        lease.expires_at = expires
        self.session.flush()
        return expires

    def release(self, name: str, token: int, *, now: datetime) -> bool:
        """End the term at ``now`` so another holder need not wait; False if it was not current."""
        now = as_utc(now, "now")
        lease = self._locked(name)
        if lease is None or lease.token != token or lease.expires_at <= now:
            return False
        lease.expires_at = now
        self.session.flush()
        return True

    def check(self, name: str, token: int, *, now: datetime) -> None:
        """Raise ``FencedError`` unless ``token`` is the lease's current, unexpired term."""
        stmt = select(Lease).where(Lease.name == name).with_for_update(read=True)
        lease = self.session.scalars(stmt.execution_options(populate_existing=True)).one_or_none()
        self._current(name, token, as_utc(now, "now"), lease)

    def get(self, name: str) -> Lease | None:
        return self.session.get(Lease, name)

    def _locked(self, name: str) -> Lease | None:
        stmt = select(Lease).where(Lease.name == name).with_for_update()
        return self.session.scalars(stmt.execution_options(populate_existing=True)).one_or_none()

    def _create(self, name: str, holder: str, expires: datetime) -> int | None:
        try:
            with self.session.begin_nested():
                self.session.add(Lease(name=check_text("lease name", name, NAME), holder=holder, token=1,
                                       expires_at=expires))  # fmt: skip
        except IntegrityError:
            return None  # another holder created it first, and holds it
        return 1

    @staticmethod
    def _current(name: str, token: int, now: datetime, lease: Lease | None) -> Lease:
        if lease is None:
            raise FencedError(name, token, "the lease was never taken")
        if lease.token != token:
            raise FencedError(name, token, f"the current term is token {lease.token}, held by {lease.holder!r}")
        if lease.expires_at <= now:
            raise FencedError(name, token, f"the term expired at {lease.expires_at.isoformat()}")
        return lease


def _window(now: datetime, ttl_s: float) -> tuple[datetime, datetime]:
    start = as_utc(now, "now")
    return start, start + timedelta(seconds=check_positive("ttl_s", ttl_s))
