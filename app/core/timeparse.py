"""Time in the app: epoch microseconds, instants from clients, durations, ISO output.

One grammar for each: an instant is epoch milliseconds (a number or a digit string) or ISO
8601 (no zone means UTC); a duration is a number with an optional unit (250ms, 90s, 15m,
2h, 1d, 1w; a bare number is seconds). Every parse error is an InvalidInput naming the field.
"""

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from app.core.errors import InvalidInput

US = 1_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_US = (datetime(1, 1, 2, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
MAX_US = (datetime(9999, 12, 30, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)


def parse_ts(value: Any, field: str) -> int:
    """Epoch milliseconds (number or digit string) or ISO 8601 to epoch microseconds (UTC),
    within years 1 to 9999; anything else is an InvalidInput naming the field."""
    if isinstance(value, bool) or value is None:
        raise InvalidInput("is required: epoch milliseconds or ISO 8601", field=field)
    if isinstance(value, int):
        return _epoch_ms_to_us(value, field)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput("must be a finite number", field=field)
        return _epoch_ms_to_us(value, field)
    if isinstance(value, str):
        text = value.strip()
        # isdigit() alone admits "²" and other digits int() refuses; the length keeps int()
        # far from its digit limit.
        if text.isascii() and text.isdigit() and len(text) <= 20:
            return _epoch_ms_to_us(int(text), field)
        if len(text) > 64:
            raise InvalidInput("must be epoch milliseconds or ISO 8601", field=field)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput("must be epoch milliseconds or ISO 8601", field=field) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return _in_range(to_us(moment), field)
    raise InvalidInput("must be epoch milliseconds or ISO 8601", field=field)


def _epoch_ms_to_us(value: float, field: str) -> int:
    # Compared before any conversion: an integer of any length is safe here.
    if not MIN_US // 1000 <= value <= MAX_US // 1000:
        raise InvalidInput("is out of range for epoch milliseconds (years 1 to 9999)", field=field)
    return _in_range(round(value * 1000), field)


def _in_range(us: int, field: str) -> int:
    if not MIN_US <= us <= MAX_US:
        raise InvalidInput("is out of range (years 1 to 9999)", field=field)
    return us


# The same grammar for OpenAPI (no flags there: the units are spelt in both cases).
DURATION_PATTERN = (
    r"^\s*\d{1,12}(\.\d{1,9})?\s*([mM][sS]|[sS]|[sS][eE][cC]|[mM]|[mM][iI][nN]|[hH]|[hH][rR]|"
    r"[dD]|[wW])?\s*$"
)
_DURATION = re.compile(r"^\s*(\d{1,12}(?:\.\d{1,9})?)\s*(ms|s|sec|m|min|h|hr|d|w)?\s*$", re.I)
_UNIT_S = {
    "ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400,
    "w": 604800,
}  # fmt: skip


def _span(seconds: float) -> str:
    for unit, width in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= width and seconds % width == 0:
            return f"{seconds / width:g}{unit}"
    return f"{seconds:g}s"


def parse_duration(value: Any, field: str, *, max_s: float, whole_minutes: bool = False) -> float:
    """Seconds from a duration such as "250ms", "90s", "15m", "2h", "1d" (or a number of
    seconds); zero or more, at most max_s; with whole_minutes, a positive whole number of
    minutes (rollup intervals)."""
    if isinstance(value, bool) or value is None:
        raise InvalidInput('must be a duration such as "90s", "15m" or "2h"', field=field)
    if isinstance(value, int) and not -(10**15) < value < 10**15:
        raise InvalidInput(f"must be at most {_span(max_s)}", field=field)
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_S[(match.group(2) or "s").lower()]
    else:
        raise InvalidInput('must be a duration such as "90s", "15m" or "2h"', field=field)
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidInput("must be a duration of zero or more", field=field)
    if whole_minutes and (seconds <= 0 or seconds % 60):
        raise InvalidInput("must be a positive whole number of minutes", field=field)
    if seconds > max_s:
        raise InvalidInput(f"must be at most {_span(max_s)}", field=field)
    return seconds


def to_datetime(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def to_us(moment: datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


def iso(us: int) -> str:
    """ISO 8601 in UTC with a Z, to the precision the value has."""
    spec = "seconds" if us % US == 0 else "milliseconds" if us % 1000 == 0 else "microseconds"
    return to_datetime(us).isoformat(timespec=spec).replace("+00:00", "Z")
