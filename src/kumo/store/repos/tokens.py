"""API tokens: ``kumo_`` and 43 URL-safe characters, shown once, stored as their SHA-256."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from sqlalchemy import select

from kumo.store.columns import as_utc
from kumo.store.errors import NotFoundError
from kumo.store.models import NAME, ApiToken, User
from kumo.store.repos._common import Repository, check_text, resolve

TOKEN_PREFIX = "kumo_"
PREFIX_LEN = 8  # characters of the token kept in clear, to tell tokens apart in listings


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
