"""The one error type: every failure the API reports carries its HTTP status; the handlers
that render it, and that turn a database or queue outage into a 503, never a 500."""

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.core.responses import json_response

log = logging.getLogger("app.errors")


class TelemetryError(Exception):
    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        status: int | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


class InvalidInput(TelemetryError):
    status = 422
    code = "invalid"


class MalformedBody(TelemetryError):
    status = 400
    code = "malformed_body"


class PayloadTooLarge(TelemetryError):
    status = 413
    code = "payload_too_large"


class Unauthorized(TelemetryError):
    status = 401
    code = "unauthorized"


class Forbidden(TelemetryError):
    status = 403
    code = "forbidden"


class LimitReached(TelemetryError):
    """A per-tenant limit (SSE connections, alert rules) is reached."""

    status = 429
    code = "limit_reached"


class Backpressure(TelemetryError):
    status = 429
    code = "backlog_full"


class Unavailable(TelemetryError):
    status = 503
    code = "unavailable"


class NotFound(TelemetryError):
    status = 404
    code = "not_found"


class Internal(TelemetryError):
    status = 500
    code = "internal"


# SQLSTATE classes of a database that cannot serve now: connection, resources, operator
# intervention (admin shutdown, query cancelled by the statement timeout), system errors,
# a missing database or refused login; read-only (a standby after failover), serialization
# conflicts a retry resolves, and a table not migrated yet.
_DB_UNAVAILABLE_CLASSES = ("08", "53", "57", "58", "40", "3D", "28")
_DB_UNAVAILABLE_STATES = ("25006", "42P01")
# Redis replies that mean "not now": out of memory, busy with a script, loading its data,
# a replica or a cluster that cannot take writes.
_REDIS_REFUSALS = ("OOM", "BUSY", "LOADING", "MASTERDOWN", "READONLY", "NOREPLICAS",
                   "CLUSTERDOWN", "TRYAGAIN", "MISCONF")  # fmt: skip


_TYPE_TAGS = frozenset({"str", "float", "int", "bool", "none", "list", "dict"})


def database_unavailable(error: BaseException) -> bool:
    if isinstance(error, (OSError, TimeoutError, asyncpg.InterfaceError)):
        return True
    if isinstance(error, asyncpg.PostgresError):
        state = getattr(error, "sqlstate", None) or ""
        return state[:2] in _DB_UNAVAILABLE_CLASSES or state in _DB_UNAVAILABLE_STATES
    return False


def queue_unavailable(error: BaseException) -> bool:
    if not isinstance(error, RedisError):
        return False
    status = getattr(error, "status_code", None) or str(error).split(" ", 1)[0]
    if isinstance(error, (RedisConnectionError, RedisTimeoutError)):
        return True
    return str(status).upper() in _REDIS_REFUSALS or str(error).startswith(_REDIS_REFUSALS)


def install_handlers(app: FastAPI, retry_after_s: int) -> None:
    """Render every error as `{"error": {"code", "message", "field"?}}`."""

    @app.exception_handler(TelemetryError)
    async def telemetry_error(request: Request, error: TelemetryError) -> Response:
        return json_response(error.body(), error.status, error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> Response:
        first = error.errors()[0]
        location: list[str] = []
        for part in first.get("loc", ())[1:]:
            text = str(part)
            # Past the field come the union branches pydantic tried ("constrained-float").
            if text in _TYPE_TAGS or text.startswith(("constrained-", "function-")):
                break
            location.append(text)
        wrapped = InvalidInput(first.get("msg", "is invalid"), field=".".join(location) or None)
        return json_response(wrapped.body(), wrapped.status)

    async def backend_error(request: Request, error: Exception) -> Response:
        rendered = render_error(error, retry_after_s, request.url.path)
        if rendered is None:
            raise error
        return rendered

    for kind in (RedisError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
        app.add_exception_handler(kind, backend_error)


_BACKEND_ERRORS = (RedisError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def render_error(error: BaseException, retry_after_s: int, path: str) -> Response | None:
    """The answer to a Redis or database error (503 when it cannot serve now, else a logged
    500); None for any other error."""
    if not isinstance(error, _BACKEND_ERRORS):
        return None
    retry_after = {"Retry-After": str(retry_after_s)}
    wrapped: TelemetryError
    if isinstance(error, RedisError) and queue_unavailable(error):
        wrapped = Unavailable(
            f"the event queue cannot take requests now ({type(error).__name__}); retry later",
            headers=retry_after,
        )
    elif not isinstance(error, RedisError) and database_unavailable(error):
        wrapped = Unavailable(
            f"the database cannot serve now ({type(error).__name__}); retry later",
            headers=retry_after,
        )
    else:
        log.error("unexpected backend error on %s", path, exc_info=error)
        wrapped = Internal("internal error")
    return json_response(wrapped.body(), wrapped.status, wrapped.headers)
