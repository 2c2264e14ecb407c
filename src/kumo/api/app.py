"""The HTTP API: ``create_app(store)`` builds the FastAPI application (``docs/concepts/api.md``).

Resources live under ``/api/v1`` (one router per noun in ``kumo.api.routes``); ``/healthz`` and
``/metrics`` answer without a token; the OpenAPI description is at ``/openapi.json`` and
``/docs``. The store, the metrics, the log directory and the clock are kept on ``app.state`` and
reached through the dependencies of :mod:`kumo.api.deps`, so tests inject their own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from platformdirs import user_data_dir
from sqlalchemy.exc import DataError, OperationalError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kumo.api import problems
from kumo.api.deps import MetricsDep, StoreDep
from kumo.api.metrics import CONTENT_TYPE, Metrics
from kumo.api.problems import problem_response
from kumo.api.routes import audit, grants, jobs, nodes, tenancy, tokens, usage
from kumo.api.schemas import Health
from kumo.store import ConflictError, NotFoundError, StaleWriteError, Store
from kumo.store.errors import FencedError, ForbiddenError

API_PREFIX = "/api/v1"
LOG_POLL_S = 0.25  # how often a followed log is read again, and its attempt's state checked


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_log_dir() -> Path:
    """Where workers' logs are by default: ``<user data dir>/kumo/logs``, beside the default database."""
    return Path(user_data_dir("kumo")) / "logs"


def create_app(
    store: Store,
    *,
    metrics: Metrics | None = None,
    log_dir: Path | None = None,
    clock: Callable[[], datetime] = utcnow,
    on_change: Callable[[], None] | None = None,
) -> FastAPI:
    """The API over ``store``; ``log_dir`` is where the executors write ``<job>.<attempt>.<rank>.log``.

    ``on_change`` is called after every write that succeeded (a committed ``POST``, ``PUT``,
    ``PATCH`` or ``DELETE`` answered below 400): ``kumo up`` passes the control loop's wake-up, so
    a submission is scheduled at once rather than at the next tick.
    """
    app = FastAPI(
        title="kumo",
        summary="Scheduling, running and metering a national AI compute programme.",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.store = store
    app.state.metrics = metrics if metrics is not None else Metrics()
    app.state.log_dir = Path(log_dir) if log_dir is not None else default_log_dir()
    app.state.clock = clock
    app.state.log_poll_s = LOG_POLL_S
    problems.install(app)
    _install_store_errors(app)
    for module in (nodes, tenancy, tokens, jobs, usage, grants, audit):
        app.include_router(module.router, prefix=API_PREFIX)
    if on_change is not None:
        app.add_middleware(WakeOnWrite, on_change=on_change)
    app.add_api_route("/healthz", healthz, methods=["GET"], response_model=Health, tags=["service"])
    app.add_api_route("/metrics", prometheus, methods=["GET"], tags=["service"], response_class=Response,
                      responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"}})
    return app


class WakeOnWrite:
    """ASGI middleware: call ``on_change`` once a write request has been answered with a success.

    Routes commit their transaction before the response starts (``deps.SessionDep``), so the
    change is visible to whoever ``on_change`` wakes."""

    READS = frozenset({"GET", "HEAD", "OPTIONS"})

    def __init__(self, app: ASGIApp, on_change: Callable[[], None]) -> None:
        self.app, self.on_change = app, on_change

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in self.READS:
            await self.app(scope, receive, send)
            return
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        if status < 400:
            self.on_change()


def healthz(store: StoreDep) -> Health:
    """Whether the API runs and reaches its database (no token needed)."""
    try:
        revision = store.revision()
    except OperationalError as exc:
        raise problems.Problem(503, f"the database does not answer: {exc.orig or exc}") from None
    return Health(status="ok", database=store.dialect, revision=revision)


def prometheus(metrics: MetricsDep) -> Response:
    """The control plane's metrics in Prometheus text format (no token needed)."""
    return Response(metrics.render(), media_type=CONTENT_TYPE)


def _install_store_errors(app: FastAPI) -> None:
    """The store's errors as problems: a missing row is a 404, a conflict or a lost race a 409."""
    problems.map_errors(app, {NotFoundError: 404, ConflictError: 409, StaleWriteError: 409, FencedError: 409,
                              ForbiddenError: 403})

    @app.exception_handler(DataError)
    async def _data(_: Request, exc: DataError) -> JSONResponse:
        return problem_response(422, f"the database refused a value: {exc.orig or exc}")

    @app.exception_handler(OperationalError)
    async def _unavailable(_: Request, exc: OperationalError) -> JSONResponse:
        return problem_response(503, "the database is unavailable; try again shortly")
