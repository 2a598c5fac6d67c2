"""Properties of the edge's parsers under hostile input: a structured outcome, never a crash.

Derandomized in `make test` (the "ci" profile in tests/conftest.py); `python -m scripts.fuzz`
runs them with random seeds and more examples.
"""

import contextlib
import math
import string
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.core.errors import InvalidInput, MalformedBody
from app.core.params import check_param, decode_cursor, parse_interval, parse_range
from app.core.timeparse import MAX_US, MIN_US, parse_duration, parse_ts
from app.ingest.body import parse_batch, parse_json
from app.ingest.contract import MAX_MAGNITUDE, MIN_MAGNITUDE, Limits, normalise
from tests.helpers import examples

NOW_US = 1_763_900_000_000_000
LIMITS = Limits(
    now_us=NOW_US,
    max_future_skew_us=300_000_000,
    retention_us=3650 * 86_400_000_000,
    max_name_length=128,
    max_tags=64,
    max_metrics=256,
)

# Text of every kind: every Unicode category, lone surrogates and NUL included.
hostile_text = st.one_of(
    st.text(st.characters(codec=None, exclude_categories=()), max_size=40),
    st.sampled_from(["", "\x00", "a\x00b", "\ud800", "x\udfff", "²", "-1", " 12 ", "1e3"]),
    st.text(min_size=120, max_size=300),
)
hostile_numbers = st.one_of(
    st.floats(),
    st.integers(),
    st.integers(min_value=10**18, max_value=10**500),
    st.sampled_from([5e-324, 2.2e-308, 1e-101, 1e-100, 1e100, 1.0000001e100, -0.0, 2**53, 2**64]),
)
scalars = st.one_of(st.none(), st.booleans(), hostile_numbers, hostile_text)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    ["event_id", "device_id", "sensor_id", "ts", "timeStamp", "site_id", "tenant_id",
     "metrics", "tags", "power_w", "value"]
)  # fmt: skip
events = st.dictionaries(st.one_of(field_names, hostile_text), json_values, max_size=8)
plausible = st.fixed_dictionaries(
    {
        "device_id": st.one_of(hostile_text, st.sampled_from(["d1", "dev-2"])),
        "ts": st.one_of(
            hostile_numbers,
            hostile_text,
            st.integers(NOW_US // 1000 - 10**11, NOW_US // 1000 + 10**6),
        ),
        "metrics": st.dictionaries(hostile_text, st.one_of(hostile_numbers, json_values)),
    },
    optional={"tags": st.one_of(json_values, st.lists(hostile_text)), "event_id": scalars},
)


def _accepted_is_storable(event: dict[str, Any]) -> None:
    """What the workers and rollups will take: encodable, bounded, in time."""
    orjson.dumps(event)
    assert NOW_US - LIMITS.retention_us <= event["ts"] <= NOW_US + LIMITS.max_future_skew_us
    for name, value in event["metrics"].items():
        assert isinstance(value, float) and math.isfinite(value)
        assert value == 0 or MIN_MAGNITUDE <= abs(value) <= MAX_MAGNITUDE, (name, value)
    for text in (event["event_id"], event["device_id"], *event["tags"], *event["metrics"]):
        assert "\x00" not in text and 0 < len(text) <= LIMITS.max_name_length


@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.one_of(events, plausible, json_values))
@example(raw={"device_id": "d", "ts": 10**400, "metrics": {"t": 1}})
@example(raw={"device_id": "d", "ts": "2025-06-01T10:00:00Z", "metrics": {"t": 5e-324}})
@example(raw={"device_id": "\ud800", "ts": 1_763_000_000_000, "metrics": {"t": 1}})
def test_an_event_is_accepted_storable_or_rejected_naming_a_field(raw: Any) -> None:
    try:
        event = normalise(raw, "default", LIMITS)
    except InvalidInput as error:
        assert isinstance(error.field, str) and error.field
        # The rejection itself must encode: it goes back to the client.
        orjson.dumps({"field": error.field, "reason": error.message})
        return
    _accepted_is_storable(event)


@settings(max_examples=examples(200))
@given(body=st.one_of(st.binary(max_size=200), json_values.map(repr).map(str.encode)))
@example(body=b"[" * 5000 + b"]" * 5000)
@example(body=b'[{"a": ' + b"9" * 5000 + b"}]")
def test_a_body_parses_or_is_a_400(body: bytes) -> None:
    for content_type in ("application/json", "application/x-ndjson"):
        try:
            parsed = parse_batch(body, content_type)
        except MalformedBody as error:
            assert error.field == "body"
            continue
        assert isinstance(parsed, list)
    with contextlib.suppress(MalformedBody):
        parse_json(body)


@settings(max_examples=examples(300))
@given(value=st.one_of(scalars, json_values))
@example(value=10**400)
@example(value="1234567890123456")
@example(value=float("nan"))
def test_a_time_is_in_range_or_rejected(value: Any) -> None:
    try:
        us = parse_ts(value, "ts")
    except InvalidInput as error:
        assert error.field == "ts"
        return
    assert MIN_US <= us <= MAX_US


@settings(max_examples=examples(300))
@given(value=st.one_of(scalars, st.from_regex(r"\s*\d{1,14}(\.\d{1,12})?\s*[a-zA-Z]{0,4}\s*")))
@example(value="1e9999m")
@example(value="99999999999w")
@example(value=10**400)
def test_a_duration_is_bounded_or_rejected(value: Any) -> None:
    try:
        seconds = parse_duration(value, "for", max_s=7 * 86400)
    except InvalidInput as error:
        assert error.field == "for"
    else:
        assert 0 <= seconds <= 7 * 86400
    if isinstance(value, str):
        try:
            interval = parse_interval(value, "interval", maximum_s=366 * 86400)
        except InvalidInput as error:
            assert error.field == "interval"
        else:
            assert interval > 0 and interval % 60 == 0


@settings(max_examples=examples(300))
@given(
    value=st.one_of(
        hostile_text,
        st.binary(max_size=60).map(lambda b: __import__("base64").urlsafe_b64encode(b).decode()),
        json_values.map(
            lambda v: __import__("base64").urlsafe_b64encode(repr(v).encode()).decode()
        ),
    )
)
def test_a_cursor_decodes_to_a_time_or_is_rejected(value: str) -> None:
    for with_device in (False, True):
        try:
            ts_us, device = decode_cursor(value, "cursor", with_device=with_device)
        except InvalidInput as error:
            assert error.field == "cursor"
            continue
        assert MIN_US <= ts_us <= MAX_US
        assert (device is not None) == with_device


@settings(max_examples=examples(300))
@given(lo=st.one_of(st.none(), hostile_text), hi=st.one_of(st.none(), hostile_text))
def test_a_range_is_ordered_or_rejected(lo: str | None, hi: str | None) -> None:
    try:
        check_param(lo or "x", "from_time")
        check_param(hi or "x", "to_time")
        start, end = parse_range(lo, hi, ("from_time", "to_time"), default_span_us=86_400_000_000)
    except InvalidInput as error:
        assert error.field in ("from_time", "to_time")
        return
    assert MIN_US <= start < end <= MAX_US


@pytest.mark.parametrize("char", ["\x00", "\ud800"])
def test_check_param_names_the_parameter(char: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_param("a" + char, "device_id")
    assert caught.value.field == "device_id"


def test_printable_ids_pass_unchanged() -> None:
    assert check_param(string.printable.strip(), "q") == string.printable.strip()
