"""Request bodies read as bytes and decoded with orjson, under a size limit."""

import json
from typing import Any

import orjson
from fastapi import Request
from starlette.requests import ClientDisconnect
from starlette.types import Receive

from app.core.errors import MalformedBody, PayloadTooLarge

NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")


async def read_asgi_body(receive: Receive, declared: str | None, max_bytes: int) -> bytes:
    """The body straight from the ASGI messages, under the same limit (the lean path)."""
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"body is larger than {max_bytes} bytes", field="body")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise MalformedBody("the client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"body is larger than {max_bytes} bytes", field="body")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"body is larger than {max_bytes} bytes", field="body")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(f"body is larger than {max_bytes} bytes", field="body")
            chunks.append(chunk)
    except ClientDisconnect:
        raise MalformedBody("the client went away before sending the whole body") from None
    return b"".join(chunks)


class HugeInteger(int):
    """An integer literal too long to be any field's value: validation rejects it by name.

    Kept as a large int so range checks see it as out of range, without ever parsing
    hundreds of digits (Python refuses more than 4,300) or converting it to float.
    """


_HUGE = HugeInteger(10**400)


def _int(text: str) -> int:
    return int(text) if len(text) <= 400 else _HUGE


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        # Python's decoder takes NaN, Infinity, integers past 64 bits and lone surrogates,
        # so validation can reject just the event that holds one and name its field.
        try:
            return json.loads(data, parse_int=_int)
        except RecursionError:
            # Nested about a thousand deep; no event field nests at all.
            raise ValueError("it is nested too deeply") from None


def parse_json(body: bytes) -> Any:
    try:
        return _loads(body)
    except ValueError as error:
        raise MalformedBody(f"is not valid JSON: {error}", field="body") from None


def parse_batch(body: bytes, content_type: str) -> list[Any]:
    if content_type.split(";")[0].strip().lower() in NDJSON_TYPES:
        lines = [line for line in body.split(b"\n") if line.strip()]
        try:
            return [_loads(line) for line in lines]
        except ValueError as error:
            raise MalformedBody(
                f"has a line that is not valid JSON: {error}", field="body"
            ) from None
    data = parse_json(body)
    if isinstance(data, dict) and isinstance(data.get("events"), list):
        data = data["events"]
    if not isinstance(data, list):
        raise MalformedBody("must be a JSON array of events (or NDJSON)", field="body")
    return data
