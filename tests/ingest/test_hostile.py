"""Hostile input, each case seen against `make run`: a 4xx naming the field, or stored as sent.

Every case here failed before the edge validator: a 500, or a 202 for an event that was then
never stored or that stopped the rollups.
"""

import base64
import json
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from app.core.settings import Settings
from app.main import create_app
from tests.fixtures.redis import StartRedis
from tests.fixtures.worker import RunWorker
from tests.helpers import event

HUGE = "1" + "0" * 400


def raw_event(
    event_id: str = '"h1"',
    device_id: str = '"d1"',
    ts: str = '"2025-06-01T10:00:00Z"',
    metrics: str = '{"temp": 20.5}',
    tags: str = "[]",
) -> bytes:
    """An event body from raw JSON fragments: numbers and escapes no encoder writes."""
    return (
        f'{{"event_id": {event_id}, "device_id": {device_id}, "ts": {ts}, '
        f'"metrics": {metrics}, "tags": {tags}}}'
    ).encode()


def field_of(response: httpx.Response) -> str:
    body: dict[str, Any] = response.json()
    field: str = body["error"]["field"]
    return field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (raw_event(metrics=f'{{"temp": {HUGE}}}'), "metrics.temp"),
        (raw_event(ts=HUGE), "ts"),
        (raw_event(ts="-" + HUGE), "ts"),
        (raw_event(metrics='{"temp": 1e400}'), "metrics.temp"),
        (raw_event(metrics='{"temp": NaN}'), "metrics.temp"),
        (raw_event(metrics='{"temp": -Infinity}'), "metrics.temp"),
        (raw_event(metrics='{"temp": 5e-324}'), "metrics.temp"),
        (raw_event(metrics='{"temp": 1e-101}'), "metrics.temp"),
        (raw_event(metrics='{"temp": 1.1e100}'), "metrics.temp"),
        (raw_event(event_id='"\\ud800"'), "event_id"),
        (raw_event(device_id='"a\\udfffb"'), "device_id"),
        (raw_event(device_id='"a\\u0000b"'), "device_id"),
        (raw_event(metrics='{"te\\u0000mp": 1}'), "metrics"),
        (raw_event(metrics='{"\\ud800": 1}'), "metrics"),
        (raw_event(ts='"\\u00b2"'), "ts"),
        (raw_event(ts='"99999999999999999999999"'), "ts"),
        (raw_event(ts='"+275760-09-13T00:00:00"'), "ts"),
    ],
)
async def test_hostile_values_get_422_naming_the_field(
    client: httpx.AsyncClient, body: bytes, field: str
) -> None:
    response = await client.post(
        "/v1/events", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert field_of(response) == field
    assert response.json()["error"]["code"] == "invalid"


async def test_nul_or_surrogate_in_a_tag_is_refused_not_accepted(client: httpx.AsyncClient) -> None:
    for tag in ('"room\\u0000101"', '"\\ud83d"'):
        body = raw_event(tags=f"[{tag}]")
        response = await client.post(
            "/v1/events", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, response.text
        assert field_of(response) == "tags[0]"


async def test_one_bad_event_fails_only_itself_in_a_batch(client: httpx.AsyncClient) -> None:
    good = orjson.dumps(event("g1")).decode()
    bad = raw_event(event_id='"bad"', metrics=f'{{"temp": {HUGE}}}').decode()
    body = f"[{good}, {bad}]".encode()
    response = await client.post(
        "/v1/events/batch", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 202, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected"]
    assert results[1]["field"] == "metrics.temp" and "1e+100" in results[1]["reason"]


async def test_a_rejected_id_that_cannot_be_encoded_is_not_echoed(
    client: httpx.AsyncClient,
) -> None:
    body = b"[" + raw_event(event_id='"\\ud800"') + b"]"
    response = await client.post(
        "/v1/events/batch", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 202
    assert response.json()["results"][0] == {
        "index": 0,
        "event_id": None,
        "status": "rejected",
        "field": "event_id",
        "reason": "event_id: must be valid Unicode (it holds a lone UTF-16 surrogate)",
    }


async def test_deep_nesting_is_a_400(client: httpx.AsyncClient) -> None:
    body = b'{"device_id": "d", "metrics": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = await client.post(
        "/v1/events", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert field_of(response) == "body"


async def test_small_and_large_values_inside_the_bounds_are_stored(
    client: httpx.AsyncClient, db: asyncpg.Connection, run_worker: RunWorker
) -> None:
    values = {"zero": 0.0, "tiny": 1e-100, "huge": -1e100, "int": 10**20}
    response = await client.post("/v1/events", json={**event("b1"), "metrics": values})
    assert response.status_code == 202, response.text
    await run_worker()
    rows = await db.fetch("SELECT metric, value FROM readings WHERE device_id = 'd1'")
    assert {r["metric"]: r["value"] for r in rows} == {k: float(v) for k, v in values.items()}


async def test_tenant_and_id_cannot_collide_in_the_dedupe_key(
    client: httpx.AsyncClient, db: asyncpg.Connection, run_worker: RunWorker
) -> None:
    first = await client.post(
        "/v1/events", json={**event("b:c"), "device_id": "x"}, headers={"X-Tenant-ID": "a"}
    )
    second = await client.post(
        "/v1/events", json={**event("c"), "device_id": "y"}, headers={"X-Tenant-ID": "a:b"}
    )
    third = await client.post(
        "/v1/events", json={**event("c}"), "device_id": "z"}, headers={"X-Tenant-ID": "{a"}
    )
    assert [r.json()["status"] for r in (first, second, third)] == ["accepted"] * 3
    await run_worker()
    stored = await db.fetch("SELECT tenant_id, event_id FROM events ORDER BY tenant_id")
    assert [(r["tenant_id"], r["event_id"]) for r in stored] == [
        ("a", "b:c"),
        ("a:b", "c"),
        ("{a", "c}"),
    ]


@pytest.mark.parametrize(
    "url",
    [
        "/v1/alerts/history?from_time=1234567890123456",
        "/v1/alerts/history?to_time=-99999999999999999",
        "/v1/devices/d1/events?from_time=9999999999999999",
        "/v1/devices/d1/events?to_time=%C2%B2",
        "/v1/metrics/aggregate?metric=t&device_id=d&from_time=" + "9" * 30,
        "/v1/metrics/aggregate?metric=t%00&device_id=d",
        "/v1/devices/bad%00id/events",
        "/v1/devices/d1/status?x=%00",
        "/v1/search?tag=a%00b",
        "/v1/alerts/history?rule_id=99999999999999999999",
        "/v1/alerts/history?device_id=d%00",
        "/v1/metrics/aggregate?metric=t&device_id=d&interval=1e9999m",
        "/v1/metrics/aggregate?metric=t&device_id=d&interval=0.5m",
    ],
)
async def test_hostile_query_parameters_get_422(client: httpx.AsyncClient, url: str) -> None:
    response = await client.get(url)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"]


async def test_cursor_outside_time_is_refused(client: httpx.AsyncClient) -> None:
    for parts in ([10**30], [-(10**20)], [1.5], ["x"]):
        cursor = base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")
        response = await client.get(f"/v1/devices/d1/events?cursor={cursor}")
        assert response.status_code == 422
        assert field_of(response) == "cursor"


async def test_database_down_is_a_503_on_reads_and_rule_writes(settings: Settings) -> None:
    down = settings.model_copy(update={"database_url": "postgresql://postgres@127.0.0.1:1/x"})
    app = create_app(down)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            responses = [
                await client.get("/v1/devices/d1/events"),
                await client.get("/v1/metrics/aggregate?metric=t&device_id=d"),
                await client.get("/v1/alerts"),
                await client.post("/v1/alerts", json={"metric": "t", "op": ">", "threshold": 1}),
            ]
    for response in responses:
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == str(settings.retry_after_s)
        assert response.json()["error"]["code"] == "unavailable"


@pytest.fixture
async def full_redis(private_redis: StartRedis) -> str:
    """A private Redis with no room left: every write is refused with OOM."""
    server = await private_redis("--maxmemory", "1", "--maxmemory-policy", "noeviction")
    return server.url


async def test_redis_out_of_memory_is_a_503_not_a_lost_event(
    settings: Settings, full_redis: str
) -> None:
    app = create_app(settings.model_copy(update={"redis_url": full_redis}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            single = await client.post("/v1/events", json=event("oom1"))
            batch = await client.post("/v1/events/batch", json=[event("oom2")])
            config = await client.put("/v1/generator/config", json={"rate": 5})
    for response in (single, batch, config):
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == str(settings.retry_after_s)
