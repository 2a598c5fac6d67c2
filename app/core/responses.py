"""JSON responses encoded with orjson."""

import json
from typing import Any

import orjson
from fastapi import Response


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
