"""The event contract: every accepted input shape normalised to one canonical event.

Canonical events are plain dicts (cheap to build and to encode with orjson):
``event_id, tenant_id, device_id, site_id, ts`` (epoch microseconds), ``metrics``, ``tags``.
"""

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from app.core.errors import InvalidInput
from app.core.timeparse import parse_ts

Event = dict[str, Any]

DEVICE_FIELDS = ("device_id", "sensor_id", "deviceId")
TS_FIELDS = ("ts", "timeStamp", "timestamp")
EVENT_ID_FIELDS = ("event_id", "eventId")
SITE_FIELDS = ("site_id", "siteId")
TENANT_FIELDS = ("tenant_id", "tenantId")
KNOWN_FIELDS = frozenset(
    DEVICE_FIELDS + TS_FIELDS + EVENT_ID_FIELDS + SITE_FIELDS + TENANT_FIELDS + ("metrics", "tags")
)
# Epoch values below this are almost surely seconds, not milliseconds (it is 1973 in ms).
_SECONDS_HINT_BELOW = 100_000_000_000


@dataclass(frozen=True, slots=True)
class Limits:
    """The validation bounds, fixed per request so one clock reading serves a batch."""

    now_us: int
    max_future_skew_us: int
    retention_us: int
    max_name_length: int
    max_tags: int
    max_metrics: int


# Bounds on metric values, so every sum, mean, square and energy integral the rollups take
# stays a finite normal double: |v| <= 1e100 (a billion readings in one bucket sum to 1e109,
# squares to 1e200) and |v| >= 1e-100 unless it is 0 (PostgreSQL raises "underflow" when a
# product or quotient of non-zero doubles rounds to 0, e.g. a subnormal 5e-324 / 60).
MAX_MAGNITUDE = 1e100
MIN_MAGNITUDE = 1e-100


def _pick(raw: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str, Any]:
    for name in names:
        if name in raw:
            return name, raw[name]
    return names[0], None


def check_text(text: str, field: str, max_length: int) -> str:
    """A string storage can take: 1 to max_length characters, valid UTF-8, no NUL."""
    if not text:
        raise InvalidInput("must not be empty", field=field)
    if len(text) > max_length:
        raise InvalidInput(f"must be at most {max_length} characters", field=field)
    if "\x00" in text:
        raise InvalidInput("must not contain NUL (\\u0000)", field=field)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(
            "must be valid Unicode (it holds a lone UTF-16 surrogate)", field=field
        ) from None
    return text


def _name(value: Any, field: str, limits: Limits, *, required: bool = True) -> str | None:
    if value is None:
        if required:
            raise InvalidInput("is required", field=field)
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInput("must be a string", field=field)
    if isinstance(value, int):
        # An integer id is taken as its digits; a huge one would not even print.
        if not -(10**limits.max_name_length) < value < 10**limits.max_name_length:
            raise InvalidInput(f"must be at most {limits.max_name_length} characters", field=field)
        value = str(value)
    return check_text(value, field, limits.max_name_length)


def _check_age(ts_us: int, field: str, limits: Limits) -> None:
    if ts_us > limits.now_us + limits.max_future_skew_us:
        raise InvalidInput(
            f"is more than {limits.max_future_skew_us // 1_000_000} s in the future", field=field
        )
    if ts_us < limits.now_us - limits.retention_us:
        hint = (
            " (it looks like epoch seconds; send milliseconds)"
            if 0 <= ts_us // 1000 < _SECONDS_HINT_BELOW
            else ""
        )
        raise InvalidInput("is older than the retention period" + hint, field=field)


def number(value: Any, field: str) -> float:
    """A metric value every aggregate can take, or InvalidInput saying the bound."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput("must be a number", field=field)
    if isinstance(value, int) and not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:
        # Checked before float(): an integer of a few hundred digits overflows it.
        raise InvalidInput(
            f"is out of range: |value| must be at most {MAX_MAGNITUDE:g}", field=field
        )
    result = float(value)
    if not math.isfinite(result):
        raise InvalidInput("must be a finite number", field=field)
    magnitude = abs(result)
    if magnitude > MAX_MAGNITUDE:
        raise InvalidInput(
            f"is out of range: |value| must be at most {MAX_MAGNITUDE:g}", field=field
        )
    if 0 < magnitude < MIN_MAGNITUDE:
        raise InvalidInput(
            f"is too small: a non-zero |value| must be at least {MIN_MAGNITUDE:g}", field=field
        )
    return result


def _key(key: str, container: str, limits: Limits) -> str:
    """A metric name, checked before it is echoed as part of a field name."""
    try:
        return check_text(key, container, limits.max_name_length)
    except InvalidInput as error:
        raise InvalidInput(f"has a name that {error.message}", field=container) from None


def _metrics(raw: Mapping[str, Any], limits: Limits) -> dict[str, float]:
    given = raw.get("metrics")
    metrics: dict[str, float] = {}
    if given is not None:
        if not isinstance(given, dict):
            raise InvalidInput("must be an object of metric name to number", field="metrics")
        if len(given) > limits.max_metrics:
            raise InvalidInput(f"must hold at most {limits.max_metrics} metrics", field="metrics")
        for key, value in given.items():
            metrics[key] = number(value, f"metrics.{_key(key, 'metrics', limits)}")
    # Flat numeric fields (power_w, latitude, value, ...) are metrics too.
    for key, value in raw.items():
        if key in KNOWN_FIELDS:
            continue
        field = _key(key, "event", limits)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidInput(
                "is not a known field; only numeric extra fields fold into metrics", field=field
            )
        metrics[key] = number(value, field)
    if not metrics:
        raise InvalidInput("must hold at least one metric", field="metrics")
    if len(metrics) > limits.max_metrics:
        raise InvalidInput(f"must hold at most {limits.max_metrics} metrics", field="metrics")
    return metrics


def _tag_value(value: Any, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(number(value, field))
    raise InvalidInput("must map tag names to strings or numbers", field=field)


def _tags(value: Any, limits: Limits) -> list[str]:
    if value is None:
        return []
    if isinstance(value, dict):
        if len(value) > limits.max_tags:
            raise InvalidInput(f"must hold at most {limits.max_tags} tags", field="tags")
        value = [f"{key}:{_tag_value(item, 'tags')}" for key, item in value.items()]
    if not isinstance(value, list):
        raise InvalidInput("must be a list of strings", field="tags")
    if len(value) > limits.max_tags:
        raise InvalidInput(f"must hold at most {limits.max_tags} tags", field="tags")
    tags: list[str] = []
    for index, tag in enumerate(value):
        field = f"tags[{index}]"
        if not isinstance(tag, str):
            raise InvalidInput("must be a string", field=field)
        check_text(tag, field, limits.max_name_length)
        if tag not in tags:
            tags.append(tag)
    return tags


def derived_event_id(tenant: str, device: str, ts_us: int, metrics: Any, tags: Any) -> str:
    """An id from the event's content, so a retried event without an id still dedupes."""
    body = orjson.dumps([tenant, device, ts_us, metrics, tags], option=orjson.OPT_SORT_KEYS)
    return "auto-" + hashlib.blake2b(body, digest_size=12).hexdigest()


def normalise(raw: Any, tenant: str, limits: Limits) -> Event:
    """One input event to its canonical form, or InvalidInput naming the field."""
    if not isinstance(raw, dict):
        raise InvalidInput("each event must be a JSON object", field="event")
    field, value = _pick(raw, TENANT_FIELDS)
    if value is not None and value != tenant:
        raise InvalidInput(f"does not match the caller's tenant {tenant!r}", field=field)
    field, value = _pick(raw, DEVICE_FIELDS)
    device = _name(value, field, limits)
    assert device is not None
    field, value = _pick(raw, TS_FIELDS)
    ts_us = parse_ts(value, field)
    _check_age(ts_us, field, limits)
    field, value = _pick(raw, SITE_FIELDS)
    site = _name(value, field, limits, required=False)
    metrics = _metrics(raw, limits)
    tags = _tags(raw.get("tags"), limits)
    field, value = _pick(raw, EVENT_ID_FIELDS)
    event_id = _name(value, field, limits, required=False)
    if event_id is None:
        event_id = derived_event_id(tenant, device, ts_us, metrics, tags)
    return {
        "event_id": event_id,
        "tenant_id": tenant,
        "device_id": device,
        "site_id": site,
        "ts": ts_us,
        "metrics": metrics,
        "tags": tags,
    }


def raw_event_id(raw: Any, limits: Limits) -> str | None:
    """The event id a client sent, for echoing it in a rejection (None when it is no valid
    id itself: it could not even be encoded in the answer)."""
    if isinstance(raw, dict):
        try:
            return _name(_pick(raw, EVENT_ID_FIELDS)[1], "event_id", limits, required=False)
        except InvalidInput:
            return None
    return None


def _iso_pattern(oldest_ms: int, newest_ms: int) -> str:
    """ISO 8601 date-times in the years the window spans (JSON Schema has no date bounds)."""
    first = datetime.fromtimestamp(max(oldest_ms, 0) / 1000, UTC).year
    last = datetime.fromtimestamp(newest_ms / 1000, UTC).year
    years = "|".join(str(year) for year in range(first, last + 1))
    return (
        f"^(?:{years})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
        "T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?$"
    )


def json_schema(limits: Limits) -> dict[str, Any]:
    """The OpenAPI schema of one event, from the same bounds `normalise` enforces.

    What JSON Schema cannot say is in the descriptions: the time window is relative to now,
    and flat numeric fields fold into metrics (the schema asks for `metrics`, a subset).
    """
    text = {"type": "string", "minLength": 1, "maxLength": limits.max_name_length,
            "pattern": "^[^\\u0000]+$"}  # fmt: skip
    value = {
        "type": "number",
        "minimum": -MAX_MAGNITUDE,
        "maximum": MAX_MAGNITUDE,
        "description": f"finite; 0 or {MIN_MAGNITUDE:g} <= |value| <= {MAX_MAGNITUDE:g}",
    }
    oldest_ms = (limits.now_us - limits.retention_us) // 1000
    newest_ms = (limits.now_us + limits.max_future_skew_us) // 1000
    window = (
        f"within the retention period (now - {limits.retention_us // 86_400_000_000} days) "
        f"and at most {limits.max_future_skew_us // 1_000_000} s ahead of now"
    )
    ts = {
        "description": f"epoch milliseconds or ISO 8601 (no zone: UTC), {window}",
        "anyOf": [
            {"type": "integer", "minimum": oldest_ms, "maximum": newest_ms},
            {
                "type": "string",
                "format": "date-time",
                "pattern": _iso_pattern(oldest_ms, newest_ms),
            },
        ],
    }
    properties: dict[str, Any] = {}
    for names, schema in (
        (EVENT_ID_FIELDS, {**text, "description": "derived from the content if absent"}),
        (DEVICE_FIELDS, text),
        (TS_FIELDS, ts),
        (SITE_FIELDS, text),
        (TENANT_FIELDS, {**text, "description": "must be the caller's tenant"}),
    ):
        for index, name in enumerate(names):
            alias = {"description": f"same as {names[0]}"} if index else {}
            properties[name] = {**schema, **alias}
    properties["metrics"] = {
        "type": "object",
        "minProperties": 1,
        "maxProperties": limits.max_metrics,
        "propertyNames": text,
        "additionalProperties": value,
    }
    properties["tags"] = {
        "description": "a list of strings, or an object folded to key:value",
        "type": "array",
        "maxItems": limits.max_tags,
        "items": text,
    }
    return {
        "type": "object",
        "required": ["metrics"],
        "allOf": [
            {"anyOf": [{"required": [name]} for name in DEVICE_FIELDS]},
            {"anyOf": [{"required": [name]} for name in TS_FIELDS]},
        ],
        "properties": properties,
        "additionalProperties": {**value, "description": "a flat numeric field folds into metrics"},
    }
