"""The event contract: input shapes, defaults and the field each rejection names."""

from typing import Any

import pytest

from app.core.errors import InvalidInput
from app.core.timeparse import parse_ts
from app.ingest.contract import Limits, derived_event_id, normalise

NOW_US = 1_763_900_000_000_000  # 2025-11-23
LIMITS = Limits(
    now_us=NOW_US,
    max_future_skew_us=300_000_000,
    retention_us=3650 * 86_400_000_000,
    max_name_length=128,
    max_tags=64,
    max_metrics=256,
)


def test_seed_004_shape() -> None:
    event = normalise(
        {
            "event_id": "e001",
            "device_id": "deviceA",
            "timeStamp": "2025-01-15T10:00:00",
            "metrics": {"temp": 34.2, "cpu": 0.44},
            "tags": ["room:101", "sensor:v2"],
        },
        "default",
        LIMITS,
    )
    assert event == {
        "event_id": "e001",
        "tenant_id": "default",
        "device_id": "deviceA",
        "site_id": None,
        "ts": 1_736_935_200_000_000,
        "metrics": {"temp": 34.2, "cpu": 0.44},
        "tags": ["room:101", "sensor:v2"],
    }


def test_seed_000_flat_fields_fold_into_metrics() -> None:
    event = normalise(
        {
            "sensor_id": "s-1",
            "ts": 1_763_000_000_000,
            "power_w": 1200.5,
            "voltage_v": 230,
            "current_a": 5.2,
            "site_id": "site-9",
            "tenant_id": "acme",
            "tags": {"room": "101"},
        },
        "acme",
        LIMITS,
    )
    assert event["device_id"] == "s-1"
    assert event["site_id"] == "site-9"
    assert event["ts"] == 1_763_000_000_000_000
    assert event["metrics"] == {"power_w": 1200.5, "voltage_v": 230.0, "current_a": 5.2}
    assert event["tags"] == ["room:101"]
    assert event["event_id"].startswith("auto-")


def test_seed_001_shape() -> None:
    event = normalise(
        {"deviceId": "d1", "ts": 1_763_000_000_123, "latitude": 37.77, "longitude": -122.41},
        "default",
        LIMITS,
    )
    assert event["metrics"] == {"latitude": 37.77, "longitude": -122.41}
    assert event["ts"] == 1_763_000_000_123_000


def test_derived_event_id_is_deterministic_and_content_sensitive() -> None:
    a = derived_event_id("t", "d", 1, {"x": 1.0}, [])
    assert a == derived_event_id("t", "d", 1, {"x": 1.0}, [])
    assert a != derived_event_id("t", "d", 1, {"x": 2.0}, [])
    raw = {"device_id": "d", "ts": 1_763_000_000_000, "metrics": {"x": 1}}
    assert (
        normalise(dict(raw), "t", LIMITS)["event_id"]
        == normalise(dict(raw), "t", LIMITS)["event_id"]
    )


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2025-01-15T10:00:00", 1_736_935_200_000_000),
        ("2025-01-15T10:00:00Z", 1_736_935_200_000_000),
        ("2025-01-15T12:00:00+02:00", 1_736_935_200_000_000),
        ("2025-01-15T10:00:00.123456", 1_736_935_200_123_456),
        (1_736_935_200_000, 1_736_935_200_000_000),
        ("1736935200000", 1_736_935_200_000_000),
        (1_736_935_200_000.5, 1_736_935_200_000_500),
    ],
)
def test_timestamps(ts: Any, expected: int) -> None:
    assert parse_ts(ts, "ts") == expected


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ({"ts": 1_763_000_000_000, "metrics": {"x": 1}}, "device_id", "required"),
        ({"device_id": "", "ts": 1_763_000_000_000, "metrics": {"x": 1}}, "device_id", "empty"),
        (
            {"device_id": "d" * 129, "ts": 1_763_000_000_000, "metrics": {"x": 1}},
            "device_id",
            "128",
        ),
        ({"device_id": "d", "metrics": {"x": 1}}, "ts", "required"),
        ({"device_id": "d", "ts": "yesterday", "metrics": {"x": 1}}, "ts", "ISO 8601"),
        (
            {"device_id": "d", "timeStamp": "2035-01-01T00:00:00", "metrics": {"x": 1}},
            "timeStamp",
            "future",
        ),
        ({"device_id": "d", "ts": 1_763_000_000, "metrics": {"x": 1}}, "ts", "seconds"),
        ({"device_id": "d", "ts": 1_763_000_000_000, "metrics": {}}, "metrics", "at least one"),
        ({"device_id": "d", "ts": 1_763_000_000_000}, "metrics", "at least one"),
        (
            {"device_id": "d", "ts": 1_763_000_000_000, "metrics": {"x": float("nan")}},
            "metrics.x",
            "finite",
        ),
        (
            {"device_id": "d", "ts": 1_763_000_000_000, "metrics": {"x": float("inf")}},
            "metrics.x",
            "finite",
        ),
        ({"device_id": "d", "ts": 1_763_000_000_000, "metrics": {"x": "1"}}, "metrics.x", "number"),
        (
            {"device_id": "d", "ts": 1_763_000_000_000, "metrics": {"x": True}},
            "metrics.x",
            "number",
        ),
        ({"device_id": "d", "ts": 1_763_000_000_000, "metrics": [1]}, "metrics", "object"),
        (
            {"device_id": "d", "ts": 1_763_000_000_000, "metrics": {"x": 1}, "tags": "a"},
            "tags",
            "list",
        ),
        (
            {"device_id": "d", "ts": 1_763_000_000_000, "metrics": {"x": 1}, "tags": [1]},
            "tags[0]",
            "string",
        ),
        (
            {"device_id": "d", "ts": 1_763_000_000_000, "metrics": {"x": 1}, "colour": "red"},
            "colour",
            "known",
        ),
        (
            {"device_id": "d", "ts": 1_763_000_000_000, "metrics": {"x": 1}, "tenant_id": "other"},
            "tenant_id",
            "tenant",
        ),
    ],
)
def test_rejections_name_the_field(raw: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        normalise(raw, "default", LIMITS)
    assert caught.value.field == field
    assert words in caught.value.message
