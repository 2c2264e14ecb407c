"""Errors as RFC 9457 problem details (``application/problem+json``), and the body-size limit.

Every error the API returns has ``type``, ``title``, ``status`` and ``detail`` (a sentence a person
can act on), plus ``errors`` (each ``{"loc": "body.jobs[3].gpus", "msg": ...}``) for invalid input.
Bad input is a 4xx and writes nothing; nothing a client sends produces a 500.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kumo.core.errors import KumoError, StateError, ValidationError

PROBLEM = "application/problem+json"
MAX_BODY_BYTES = 10 * 1024 * 1024  # 10 MiB: an array of 100,000 small jobs fits


class Problem(Exception):
    """Raise in a route to answer with a problem: ``Problem(404, "job j-000123 does not exist")``."""

    def __init__(self, status: int, detail: str, title: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or _TITLES.get(status, "Error")
        self.extra = extra


_TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 409: "Conflict",
           413: "Payload too large", 415: "Unsupported media type", 422: "Invalid input",
           500: "Internal error", 503: "Unavailable"}


def problem_response(status: int, detail: str, title: str | None = None, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title or _TITLES.get(status, "Error"), "status": status,
            "detail": detail, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def install(app: FastAPI) -> None:
    """Register the problem handlers and the body-size limit on ``app``."""

    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.detail, exc.title, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": _loc(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()]
        first = errors[0] if errors else {"loc": "body", "msg": "invalid"}
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return problem_response(422, f"{first['loc']}: {first['msg']}{more}", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(exc.status_code, str(exc.detail))

    map_errors(app, {ValidationError: 422, StateError: 409, KumoError: 400})
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)


def map_errors(app: FastAPI, statuses: dict[type[Exception], int]) -> None:
    """Answer each exception type with a problem of its status and the exception's message (the
    most specific registered class of a raised exception wins)."""
    for exc_type, status in statuses.items():

        async def handler(_: Request, exc: Exception, status: int = status) -> JSONResponse:
            return problem_response(status, str(exc))

        app.add_exception_handler(exc_type, handler)


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with a 413, by header or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        seen, too_large, started = 0, False, False

        async def limited() -> Message:
            nonlocal seen, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True  # the app sees a disconnect; we answer 413 instead of it
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if too_large:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except Exception:
            if not too_large:
                raise
        if too_large and not started:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        mib = self.max_bytes // (1024 * 1024)
        response = problem_response(413, f"the request body is larger than {mib} MiB; split it into smaller requests")
        await response(scope, receive, send)

