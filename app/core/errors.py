"""The one error type: every failure the API reports carries its HTTP status."""

from typing import Any


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


class Backpressure(TelemetryError):
    status = 429
    code = "backlog_full"


class Unavailable(TelemetryError):
    status = 503
    code = "unavailable"


class NotFound(TelemetryError):
    status = 404
    code = "not_found"
