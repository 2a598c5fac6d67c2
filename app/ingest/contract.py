"""The event contract: every accepted input shape normalised to one canonical event.

Canonical events are plain dicts (cheap to build and to encode with orjson):
``event_id, tenant_id, device_id, site_id, ts`` (epoch microseconds), ``metrics``, ``tags``.
"""

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
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


def _pick(raw: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str, Any]:
    for name in names:
        if name in raw:
            return name, raw[name]
    return names[0], None


def _name(value: Any, field: str, limits: Limits, *, required: bool = True) -> str | None:
    if value is None:
        if required:
            raise InvalidInput("is required", field=field)
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInput("must be a string", field=field)
    text = str(value)
    if not text:
        raise InvalidInput("must not be empty", field=field)
    if len(text) > limits.max_name_length:
        raise InvalidInput(f"must be at most {limits.max_name_length} characters", field=field)
    return text


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


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput("must be a number", field=field)
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInput("must be a finite number", field=field)
    return number


def _metrics(raw: Mapping[str, Any], limits: Limits) -> dict[str, float]:
    given = raw.get("metrics")
    metrics: dict[str, float] = {}
    if given is not None:
        if not isinstance(given, dict):
            raise InvalidInput("must be an object of metric name to number", field="metrics")
        for key, value in given.items():
            field = f"metrics.{key}"
            _name(key, field, limits)
            metrics[key] = _number(value, field)
    # Flat numeric fields (power_w, latitude, value, ...) are metrics too.
    for key, value in raw.items():
        if key in KNOWN_FIELDS:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidInput(
                "is not a known field; only numeric extra fields fold into metrics", field=key
            )
        _name(key, key, limits)
        metrics[key] = _number(value, key)
    if not metrics:
        raise InvalidInput("must hold at least one metric", field="metrics")
    if len(metrics) > limits.max_metrics:
        raise InvalidInput(f"must hold at most {limits.max_metrics} metrics", field="metrics")
    return metrics


def _tags(value: Any, limits: Limits) -> list[str]:
    if value is None:
        return []
    if isinstance(value, dict):
        value = [f"{key}:{item}" for key, item in value.items()]
    if not isinstance(value, list):
        raise InvalidInput("must be a list of strings", field="tags")
    if len(value) > limits.max_tags:
        raise InvalidInput(f"must hold at most {limits.max_tags} tags", field="tags")
    tags: list[str] = []
    for index, tag in enumerate(value):
        if not isinstance(tag, str):
            raise InvalidInput("must be a string", field=f"tags[{index}]")
        if not tag or len(tag) > limits.max_name_length:
            raise InvalidInput(
                f"must be 1 to {limits.max_name_length} characters", field=f"tags[{index}]"
            )
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


def raw_event_id(raw: Any) -> str | None:
    """The event id a client sent, for echoing it in a rejection."""
    if isinstance(raw, dict):
        value = _pick(raw, EVENT_ID_FIELDS)[1]
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return str(value)
    return None
