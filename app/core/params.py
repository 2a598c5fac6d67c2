"""Query parameters: times, ranges, intervals, limits and cursors, checked in one place.

Every parse error is an InvalidInput naming the parameter. Times are epoch microseconds
inside the app, as in app/ingest/contract.py.
"""

import base64
import binascii
from datetime import datetime

import orjson
from fastapi import Request

from app.core.errors import InvalidInput
from app.core.timeparse import MAX_US, MIN_US, parse_duration, parse_ts, to_datetime

# Longer query or path values are never ids, times or cursors this API hands out.
MAX_PARAM_LENGTH = 4096


def check_param(value: str, name: str) -> str:
    """A query, path or header value the database can take: no NUL, valid Unicode, bounded."""
    if len(value) > MAX_PARAM_LENGTH:
        raise InvalidInput(f"must be at most {MAX_PARAM_LENGTH} characters", field=name)
    if "\x00" in value:
        raise InvalidInput("must not contain NUL (\\u0000)", field=name)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("must be valid Unicode", field=name) from None
    return value


async def check_request_params(request: Request) -> None:
    """Every route's dependency: each query and path value checked before any handler sees
    it, so no parameter can carry a NUL or a lone surrogate into SQL or into an answer."""
    for name, value in request.query_params.multi_items():
        check_param(name, "query")
        check_param(value, name)
    for name, value in request.path_params.items():
        if isinstance(value, str):
            check_param(value, name)


def parse_time(value: str | None, name: str, default_us: int) -> int:
    """Epoch milliseconds or ISO 8601 (no zone means UTC) to epoch microseconds."""
    if value is None or value == "":
        return default_us
    return parse_ts(value, name)


def parse_optional_time(value: str | None, name: str) -> datetime | None:
    """An optional time parameter as a datetime, None when absent."""
    if value is None or value == "":
        return None
    return to_datetime(parse_ts(value, name))


def parse_range(
    from_value: str | None,
    to_value: str | None,
    names: tuple[str, str],
    *,
    default_to_us: int = 0,
    default_span_us: int | None = None,
) -> tuple[int, int]:
    """A half-open [from, to) range; by default `to` is the end of time and `from` its start,
    or `to` is the given instant and `from` that minus the span."""
    if default_span_us is None:
        to_us = parse_time(to_value, names[1], MAX_US)
        from_us = parse_time(from_value, names[0], MIN_US)
    else:
        to_us = parse_time(to_value, names[1], default_to_us)
        from_us = parse_time(from_value, names[0], max(MIN_US, to_us - default_span_us))
    if from_us >= to_us:
        raise InvalidInput(f"must be later than {names[0]}", field=names[1])
    return from_us, to_us


def parse_interval(value: str, name: str, *, maximum_s: int) -> int:
    """A rollup interval or window: a positive whole number of minutes, in seconds."""
    return int(parse_duration(value, name, max_s=maximum_s, whole_minutes=True))


def check_limit(value: int, name: str, maximum: int) -> int:
    if value < 1 or value > maximum:
        raise InvalidInput(f"must be between 1 and {maximum}", field=name)
    return value


def encode_cursor(ts_us: int, device_id: str | None = None) -> str:
    body = orjson.dumps([ts_us, device_id] if device_id is not None else [ts_us])
    return base64.urlsafe_b64encode(body).decode().rstrip("=")


def decode_cursor(value: str, name: str, *, with_device: bool) -> tuple[int, str | None]:
    """The position a cursor names; a cursor from another listing is refused."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        parts = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise InvalidInput("is not a cursor this API returned", field=name) from None
    expected = 2 if with_device else 1
    if (
        not isinstance(parts, list)
        or len(parts) != expected
        or not isinstance(parts[0], int)
        or isinstance(parts[0], bool)
        or not MIN_US <= parts[0] <= MAX_US
        or (with_device and not isinstance(parts[1], str))
    ):
        raise InvalidInput("is not a cursor this API returned", field=name)
    if with_device:
        check_param(parts[1], name)
    return parts[0], parts[1] if with_device else None
