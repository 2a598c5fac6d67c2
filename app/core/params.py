"""Query parameters of the read API: times, durations, limits and cursors.

Every parse error is an InvalidInput naming the parameter. Times are epoch microseconds
inside the app, as in app/ingest/contract.py.
"""

import base64
import binascii
import re
from datetime import UTC, datetime, timedelta

import orjson

from app.core.errors import InvalidInput
from app.ingest.contract import parse_ts

US = 1_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_US = (datetime(1, 1, 2, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
MAX_US = (datetime(9999, 12, 30, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
_DURATION = re.compile(r"^\s*(\d{1,9})\s*(s|sec|m|min|h|hr|d|w)?\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400, "w": 604800}


def parse_time(value: str | None, name: str, default_us: int) -> int:
    """Epoch milliseconds or ISO 8601 (no zone means UTC) to epoch microseconds."""
    if value is None or value == "":
        return default_us
    us = parse_ts(value, name)
    if not MIN_US <= us <= MAX_US:
        raise InvalidInput("is out of range (years 1 to 9999)", field=name)
    return us


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
        from_us = parse_time(from_value, names[0], to_us - default_span_us)
    if from_us >= to_us:
        raise InvalidInput(f"must be later than {names[0]}", field=names[1])
    return from_us, to_us


def parse_duration(value: str, name: str, *, maximum_s: int) -> int:
    """A whole number of minutes such as 1m, 15m, 1h, 1d or 7d (also 60s, 1w), in seconds."""
    match = _DURATION.match(value)
    if not match:
        raise InvalidInput("must be a duration such as 1m, 15m, 1h or 1d", field=name)
    seconds = int(match.group(1)) * _UNIT_S[(match.group(2) or "s").lower()]
    if seconds <= 0 or seconds % 60:
        raise InvalidInput("must be a positive whole number of minutes", field=name)
    if seconds > maximum_s:
        raise InvalidInput(f"must be at most {maximum_s // 86400} days", field=name)
    return seconds


def check_limit(value: int, name: str, maximum: int) -> int:
    if value < 1 or value > maximum:
        raise InvalidInput(f"must be between 1 and {maximum}", field=name)
    return value


def to_datetime(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def to_us(moment: datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


def iso(us: int) -> str:
    """ISO 8601 in UTC with a Z, to the precision the value has."""
    spec = "seconds" if us % US == 0 else "milliseconds" if us % 1000 == 0 else "microseconds"
    return to_datetime(us).isoformat(timespec=spec).replace("+00:00", "Z")


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
        or (with_device and not isinstance(parts[1], str))
    ):
        raise InvalidInput("is not a cursor this API returned", field=name)
    return parts[0], parts[1] if with_device else None
