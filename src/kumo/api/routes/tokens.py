"""Who am I, and API tokens: create (shown once), list, revoke.

Everyone manages their own tokens (``tokens.own``); another user's are the admin's
(``tokens.write``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from kumo.api.authz import Principal
from kumo.api.deps import CurrentPrincipal, NowDep, ReadSessionDep, RemoteAddr, SessionDep, require
from kumo.api.routes._common import audit
from kumo.api.schemas import NAME_PATTERN, GrantPublic, TokenCreate, TokenCreated, TokenPublic, TokensPublic, UserPublic
from kumo.store import ApiToken, TokenRepository

router = APIRouter(tags=["tokens"])
TokenId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the token's id")]


def token_public(row: ApiToken) -> TokenPublic:
    return TokenPublic(id=row.id, user=row.user.name, name=row.name, prefix=row.prefix, created_at=row.created_at,
                       revoked_at=row.revoked_at, last_used_at=row.last_used_at)


def _for_user(who: Principal, user: str | None) -> str:
    """The user a token request is about: one's own (``tokens.own``) or another's (``tokens.write``)."""
    if user is None or user == who.user:
        require(who, "tokens.own")
        return who.user
    require(who, "tokens.write")
    return user


@router.get("/whoami")
def whoami(who: CurrentPrincipal) -> UserPublic:
    """The caller and its roles."""
    require(who, "tokens.own")
    roles = [GrantPublic(role=g.role.value, programme=g.programme, project=g.project) for g in who.grants]
    return UserPublic(name=who.user, roles=roles)


@router.post("/tokens", status_code=status.HTTP_201_CREATED)
def create_token(
    body: TokenCreate, who: CurrentPrincipal, session: SessionDep, now: NowDep, addr: RemoteAddr
) -> TokenCreated:
    """A new token, returned in full this once (an admin may create one for another ``user``)."""
    user = _for_user(who, body.user)
    row, plaintext = TokenRepository(session).create(user, body.name, now=now)
    audit(session, who, "tokens.create", f"token/{row.id}", now=now, remote_addr=addr,
          data={"user": user, "name": row.name, "prefix": row.prefix})
    return TokenCreated(**token_public(row).model_dump(), token=plaintext)


@router.get("/tokens")
def list_tokens(
    who: CurrentPrincipal, session: ReadSessionDep, user: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None
) -> TokensPublic:
    """The caller's tokens (or ``user``'s, for an admin), revoked ones included; never their text."""
    owner = _for_user(who, user)
    return TokensPublic(items=[token_public(t) for t in TokenRepository(session).list(owner)])


@router.delete("/tokens/{token_id}")
def revoke_token(
    token_id: TokenId, who: CurrentPrincipal, session: SessionDep, now: NowDep, addr: RemoteAddr
) -> TokenPublic:
    """Revoke a token for good: one's own, or anyone's for an admin."""
    repo = TokenRepository(session)
    row = repo.get(token_id)
    _for_user(who, row.user.name)
    row = repo.revoke(token_id, now=now)
    audit(session, who, "tokens.revoke", f"token/{row.id}", now=now, remote_addr=addr, data={"user": row.user.name})
    return token_public(row)
