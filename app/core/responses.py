"""JSON responses encoded with orjson."""

import json
from typing import Any

import orjson
from fastapi import Response
from pydantic import BaseModel


def dumps(body: Any) -> bytes:
    """orjson, or for text orjson refuses (a lone surrogate echoed from a request), Python's
    encoder, which escapes it: an answer is always valid JSON, never a 500."""
    try:
        return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return json.dumps(body, default=str).encode()


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        dumps(body),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    """What every 4xx and 5xx answer holds."""

    error: ErrorDetail


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a router's routes can answer."""
    described = {
        400: "malformed request body",
        401: "no API key, or an unknown one",
        403: "the API key is revoked or expired",
        404: "not found",
        409: "conflict",
        413: "request too large",
        422: "invalid input; `field` names it",
        429: "backlog full or rate limited; retry after Retry-After",
        503: "database or queue unavailable; retry after Retry-After",
    }
    return {status: {"model": ErrorBody, "description": described[status]} for status in statuses}
