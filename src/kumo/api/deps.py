"""Dependencies of the routes, as ``Annotated`` aliases (the FastAPI template's ``api/deps.py``).

- ``SessionDep``: one store transaction per request, committed when the route returns, rolled back
  when it raises — before the response is sent, so a client never sees a 2xx for a write that
  did not commit; ``ReadSessionDep``: a read-only one.
- ``CurrentPrincipal``: the caller, from ``Authorization: Bearer kumo_…`` (authenticated in a
  short transaction of its own, which records the token's use), with its roles.
- ``require(principal, action, programme, project)``: a 403 problem unless ``authz.allowed``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from kumo.api import authz
from kumo.api.authz import Grant, Principal, Role
from kumo.api.metrics import Metrics
from kumo.api.problems import Problem
from kumo.store import Store, TenancyRepository, TokenRepository

_bearer = HTTPBearer(auto_error=False, description="an API token: `Authorization: Bearer kumo_…`")


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def get_now(request: Request) -> datetime:
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


def get_log_dir(request: Request) -> Path:
    log_dir: Path = request.app.state.log_dir
    return log_dir


def get_remote_addr(request: Request) -> str | None:
    """The client's address, for the audit log."""
    return request.client.host[:64] if request.client is not None and request.client.host else None


StoreDep = Annotated[Store, Depends(get_store)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
NowDep = Annotated[datetime, Depends(get_now)]
LogDirDep = Annotated[Path, Depends(get_log_dir)]
RemoteAddr = Annotated[str | None, Depends(get_remote_addr)]


def get_session(store: StoreDep) -> Iterator[Session]:
    with store.session() as session:
        yield session


def get_read_session(store: StoreDep) -> Iterator[Session]:
    with store.session(readonly=True) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
ReadSessionDep = Annotated[Session, Depends(get_read_session, scope="function")]


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; a 401 problem otherwise."""
    if header is None or not header.strip():
        raise Problem(401, "missing bearer token: send 'Authorization: Bearer kumo_…'")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Problem(401, "malformed Authorization header: expected 'Bearer kumo_…'")
    return token


def get_principal(
    request: Request,
    store: StoreDep,
    now: NowDep,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],  # documents the scheme in OpenAPI
) -> Principal:
    token = bearer_token(request.headers.get("authorization"))
    with store.session() as session:
        user = TokenRepository(session).authenticate(token, now=now)
        if user is None:
            raise Problem(401, "unknown or revoked token")
        grants = tuple(
            Grant(Role(g.role.value), g.programme, g.project) for g in TenancyRepository(session).roles_of(user)
        )
        principal = Principal(user.name, grants)
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require(principal: Principal, action: str, programme: str | None = None, project: str | None = None) -> None:
    """Raise a 403 problem saying what was needed unless ``principal`` may do ``action``."""
    if not authz.allowed(principal, action, programme, project):
        raise Problem(403, authz.denial(principal, action, programme, project))
