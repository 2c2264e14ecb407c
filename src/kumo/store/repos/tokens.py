"""API tokens: ``kumo_`` and 43 URL-safe characters, shown once, stored as their SHA-256.

:class:`VerifiedTokens` remembers, for at most ``CACHE_TTL_S`` (1 s), what a token was verified
to be, so that a busy client is not looked up (and its ``last_used_at`` not written) on every
request. Anything that can change a verification's answer — a token revoked, a role granted or
removed, a user deleted — empties every such cache of the process as soon as it is flushed and
again when it commits, so in the process that made the change it takes effect at once; a change
made by another process takes effect within ``CACHE_TTL_S``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import event, select
from sqlalchemy.orm import Session, object_session

from kumo.store.columns import as_utc
from kumo.store.errors import NotFoundError
from kumo.store.models import NAME, ApiToken, Membership, User
from kumo.store.repos._common import Repository, check_text, resolve

TOKEN_PREFIX = "kumo_"
PREFIX_LEN = 8  # characters of the token kept in clear, to tell tokens apart in listings
CACHE_TTL_S = 1.0  # how long a verified token is believed without asking the database again
CACHE_MAX = 10_000  # tokens remembered at most (past it the cache starts again empty)
_CHANGED = "kumo.auth_changed"  # Session.info key: this transaction changed who may do what

V = TypeVar("V")


def hash_token(plaintext: str) -> str:
    """The SHA-256 of the token, in hex: what the store keeps and looks up."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


class TokenRepository(Repository):
    """Create, authenticate, list and revoke API tokens."""

    def create(self, user: User | str, name: str, *, now: datetime) -> tuple[ApiToken, str]:
        """A new token for ``user``: the stored row and the plaintext, which is never stored."""
        owner = resolve(self.session, User, "user", user)
        plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = ApiToken(
            user=owner, name=check_text("token name", name, NAME), prefix=plaintext[:PREFIX_LEN],
            token_hash=hash_token(plaintext), created_at=as_utc(now, "now"), revoked_at=None, last_used_at=None,
        )  # fmt: skip
        self.session.add(row)
        self.session.flush()
        return row, plaintext

    def authenticate(self, plaintext: str, *, now: datetime) -> User | None:
        """The user a live token belongs to (recording its use), or None.

        The lookup is by hash, so the time it takes tells nothing about the plaintext; the
        found hash is compared again in constant time.
        """
        if not isinstance(plaintext, str) or not plaintext.startswith(TOKEN_PREFIX):
            return None
        digest = hash_token(plaintext)
        row = self.session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).one_or_none()
        if row is None or not hmac.compare_digest(row.token_hash, digest) or row.revoked_at is not None:
            return None
        row.last_used_at = as_utc(now, "now")
        self.session.flush()
        return row.user

    def revoke(self, token_id: int, *, now: datetime) -> ApiToken:
        """Revoke a token for good; revoking it again keeps the first revocation time."""
        row = self.get(token_id)
        if row.revoked_at is None:
            row.revoked_at = as_utc(now, "now")
            self.session.flush()
        return row

    def get(self, token_id: int) -> ApiToken:
        row = self.session.get(ApiToken, token_id)
        if row is None:
            raise NotFoundError("token", token_id)
        return row

    def list(self, user: User | str) -> list[ApiToken]:
        """The user's tokens, revoked ones included, oldest first."""
        owner = resolve(self.session, User, "user", user)
        return list(self.session.scalars(select(ApiToken).where(ApiToken.user_id == owner.id).order_by(ApiToken.id)))


# --------------------------------------------------------------------------- verified-token cache

_lock = threading.Lock()
_generation = 0  # raised whenever a change that can refuse a cached token is flushed or committed


def auth_generation() -> int:
    """A number that changes whenever a token is revoked or a role granted or removed in this process."""
    return _generation


def invalidate_verified_tokens() -> None:
    """Forget every verified token of every :class:`VerifiedTokens` in this process."""
    global _generation
    with _lock:
        _generation += 1


class VerifiedTokens(Generic[V]):
    """What tokens were verified to be (a user and its roles, say), believed for ``ttl_s`` seconds.

    Keys are the tokens' SHA-256, never their text. A value is only kept if nothing that can
    refuse a token happened in this process since the verification began: take
    :func:`auth_generation` before asking the database and hand it to :meth:`put`.
    """

    def __init__(self, ttl_s: float = CACHE_TTL_S, *, max_size: int = CACHE_MAX,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self.max_size, self.clock = ttl_s, max_size, clock
        self._entries: dict[str, tuple[V, float, int]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, plaintext: str) -> V | None:
        digest = hash_token(plaintext)
        hit = self._entries.get(digest)
        if hit is None:
            return None
        value, expires, generation = hit
        if generation != _generation or self.clock() >= expires:
            self._entries.pop(digest, None)
            return None
        return value

    def put(self, plaintext: str, value: V, generation: int) -> None:
        """Remember ``value`` for ``plaintext``, verified from ``generation`` on (see the class)."""
        if generation != _generation or self.ttl_s <= 0:
            return
        if len(self._entries) >= self.max_size:
            self._entries.clear()
        self._entries[hash_token(plaintext)] = (value, self.clock() + self.ttl_s, generation)


def _auth_changed(target: Any) -> None:
    session = object_session(target)
    if session is not None:
        session.info[_CHANGED] = True
    invalidate_verified_tokens()  # at once: a concurrent verification must not be kept


@event.listens_for(ApiToken.revoked_at, "set")
def _on_revoke(target: ApiToken, value: Any, old: Any, _initiator: Any) -> None:
    if value is not None and old is None:
        _auth_changed(target)


@event.listens_for(Membership, "after_insert")
@event.listens_for(Membership, "after_update")
@event.listens_for(Membership, "after_delete")
@event.listens_for(User, "after_delete")
@event.listens_for(ApiToken, "after_delete")
def _on_role_change(_mapper: Any, _connection: Any, target: Any) -> None:
    _auth_changed(target)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop(_CHANGED, False):
        invalidate_verified_tokens()  # again: verifications that read the old rows meanwhile


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_CHANGED, None)
