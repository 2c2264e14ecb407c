"""Dependencies of the routes, as ``Annotated`` aliases (the FastAPI template's ``api/deps.py``).

- ``SessionDep``: one store transaction per request, committed when the route returns, rolled back
  when it raises — before the response is sent, so a client never sees a 2xx for a write that
  did not commit; ``ReadSessionDep``: a read-only one.
- ``CurrentPrincipal``: the caller, from ``Authorization: Bearer kumo_…`` (authenticated in a
  short transaction of its own, which records the token's use), with its roles. A verified token
  is believed for up to a second (``TokenRepository``'s ``VerifiedTokens``): a revocation or a
  role change made through this process applies at once, one made elsewhere within that second.
- ``require(principal, action, programme, project)``: a 403 problem unless ``authz.allowed``.

The dependencies that only read ``app.state`` are ``async``: FastAPI runs a plain ``def``
dependency in its thread pool, a hop that costs more than what they do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from kumo.api import authz
from kumo.api.authz import Grant, Principal, Role
from kumo.api.metrics import Metrics
from kumo.api.problems import Problem
from kumo.store import Store, TenancyRepository, TokenRepository
from kumo.store.repos.tokens import VerifiedTokens, auth_generation, hash_token

_bearer = HTTPBearer(auto_error=False, description="an API token: `Authorization: Bearer kumo_…`")


def request_store(request: Request) -> Store:
    """The app's store (what ``StoreDep`` gives; for a route that reads it from its request)."""
    store: Store = request.app.state.store
    return store


def request_now(request: Request) -> datetime:
    """The app's clock, read now (``NowDep``)."""
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


def remote_addr(request: Request) -> str | None:
    """The client's address, for the audit log (``RemoteAddr``)."""
    return request.client.host[:64] if request.client is not None and request.client.host else None


async def get_store(request: Request) -> Store:
    return request_store(request)


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def get_now(request: Request) -> datetime:
    return request_now(request)


async def get_log_dir(request: Request) -> Path:
    log_dir: Path = request.app.state.log_dir
    return log_dir


async def get_remote_addr(request: Request) -> str | None:
    return remote_addr(request)


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


async def get_principal(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],  # documents the scheme in OpenAPI
) -> Principal:
    token = bearer_token(request.headers.get("authorization"))
    store = request_store(request)  # not StoreDep, NowDep: every request comes here, and each costs
    verified = _verified_tokens(request, store)
    principal = verified.get(token)
    if principal is None:
        principal = await _verify(request, verified, store, token, request_now(request))
    request.state.principal = principal
    return principal


async def _verify(request: Request, verified: VerifiedTokens[Principal], store: Store, token: str,
                  now: datetime) -> Principal:
    """Ask the database about ``token`` once, however many requests carrying it arrive meanwhile
    (a busy client's requests all find their token expired from the cache at the same moment)."""
    inflight: dict[str, asyncio.Task[Principal]] = request.app.state.__dict__.setdefault("verifying_tokens", {})
    key = hash_token(token)
    task = inflight.get(key)
    if task is None or task.get_loop() is not asyncio.get_running_loop():

        async def verify() -> Principal:
            generation = auth_generation()
            principal = await run_in_threadpool(authenticate, store, token, now)
            verified.put(token, principal, generation)
            return principal

        task = inflight[key] = asyncio.get_running_loop().create_task(verify())
        task.add_done_callback(lambda done: _forget(inflight, key, done))
    return await asyncio.shield(task)  # a request that goes away does not cancel the others' answer


def _forget(inflight: dict[str, asyncio.Task[Principal]], key: str, task: asyncio.Task[Principal]) -> None:
    if inflight.get(key) is task:
        del inflight[key]
    if not task.cancelled():
        task.exception()  # retrieved: whoever awaited it has it; nobody else should be warned


def authenticate(store: Store, token: str, now: datetime) -> Principal:
    """The token's user and roles from the database (recording the token's use); a 401 problem if
    the token is unknown or revoked."""
    with store.session() as session:
        user = TokenRepository(session).authenticate(token, now=now)
        if user is None:
            raise Problem(401, "unknown or revoked token")
        grants = tuple(
            Grant(Role(g.role.value), g.programme, g.project) for g in TenancyRepository(session).roles_of(user)
        )
        return Principal(user.name, grants)


def _verified_tokens(request: Request, store: Store) -> VerifiedTokens[Principal]:
    """The app's cache of verified tokens (made on first use; dropped if the app's store changed)."""
    state = request.app.state
    cache: VerifiedTokens[Principal] | None = getattr(state, "verified_tokens", None)
    if cache is None or getattr(state, "verified_tokens_store", None) is not store:
        cache = state.verified_tokens = VerifiedTokens()
        state.verified_tokens_store = store
    return cache


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require(principal: Principal, action: str, programme: str | None = None, project: str | None = None) -> None:
    """Raise a 403 problem saying what was needed unless ``principal`` may do ``action``."""
    if not authz.allowed(principal, action, programme, project):
        raise Problem(403, authz.denial(principal, action, programme, project))
