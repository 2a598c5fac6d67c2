"""The ingest API against real Redis: statuses, dedupe, validation, limits, backpressure."""

from typing import Any

import httpx
from redis.asyncio import Redis

from app.core.settings import Settings
from app.ingest.enqueue import Enqueuer
from app.main import create_app
from tests.helpers import SEED_BATCH, SEED_SINGLE, event, post_batch


async def test_seed_004_single_and_batch_give_202(client: httpx.AsyncClient, redis: Redis) -> None:
    single = await client.post("/v1/events", json=SEED_SINGLE)
    assert single.status_code == 202
    assert single.json() == {"event_id": "e001", "status": "accepted"}
    batch = await client.post("/v1/events/batch", json=SEED_BATCH)
    assert batch.status_code == 202
    body = batch.json()
    assert [r["status"] for r in body["results"]] == ["accepted", "accepted"]
    assert [r["event_id"] for r in body["results"]] == ["e002", "e003"]
    assert body["accepted"] == 2
    # Two requests, two stream entries: one per request, not one per event.
    assert await redis.xlen("telemetry:events") == 2


async def test_duplicates_within_and_across_batches(client: httpx.AsyncClient) -> None:
    first = await post_batch(client, [event("a"), event("b", minute=1), event("a")])
    assert [r["status"] for r in first["results"]] == ["accepted", "accepted", "duplicate"]
    second = await post_batch(client, [event("b", minute=1), event("c", minute=2)])
    assert [r["status"] for r in second["results"]] == ["duplicate", "accepted"]
    again = await client.post("/v1/events", json=event("c", minute=2))
    assert again.json() == {"event_id": "c", "status": "duplicate"}


async def test_event_without_id_dedupes_on_retry(client: httpx.AsyncClient) -> None:
    raw = {"sensor_id": "s1", "ts": 1_763_000_000_000, "power_w": 10.5}
    first = (await client.post("/v1/events", json=raw)).json()
    second = (await client.post("/v1/events", json=raw)).json()
    assert first["status"] == "accepted"
    assert second == {"event_id": first["event_id"], "status": "duplicate"}


async def test_batch_rejects_only_the_bad_events(client: httpx.AsyncClient, redis: Redis) -> None:
    body = b'[{"device_id":"d","ts":"2025-06-01T00:00:00Z","metrics":{"x":NaN}},' + (
        b'{"device_id":"d","ts":"2025-06-01T00:01:00Z","metrics":{"x":1}},{"ts":1}]'
    )
    response = await client.post(
        "/v1/events/batch", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 202
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["rejected", "accepted", "rejected"]
    assert results[0]["field"] == "metrics.x" and "finite" in results[0]["reason"]
    assert results[2]["field"] == "device_id"
    entries: Any = await redis.xrange("telemetry:events")
    assert len(entries) == 1 and entries[0][1][b"n"] == b"1"


async def test_ndjson_batch(client: httpx.AsyncClient) -> None:
    body = b'{"device_id":"d","ts":1763000000000,"v":1}\n\n{"device_id":"d","ts":1763000001000,"v":2}\n'
    response = await client.post(
        "/v1/events/batch", content=body, headers={"content-type": "application/x-ndjson"}
    )
    assert response.status_code == 202
    assert response.json()["accepted"] == 2


async def test_single_event_validation_names_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/events", json={"device_id": "d", "ts": 1_763_000_000_000})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "metrics"
    response = await client.post(
        "/v1/events", json={"device_id": "d", "timeStamp": "soon", "metrics": {"x": 1}}
    )
    assert response.json()["error"]["field"] == "timeStamp"
    response = await client.post("/v1/events", content=b"{not json")
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "body"
    response = await client.post("/v1/events/batch", json={"device_id": "d"})
    assert response.status_code == 400


async def test_tenant_header_scopes_dedupe(client: httpx.AsyncClient) -> None:
    raw = event("same")
    a = await client.post("/v1/events", json=raw, headers={"X-Tenant-ID": "acme"})
    b = await client.post("/v1/events", json=raw, headers={"X-Tenant-ID": "globex"})
    assert a.json()["status"] == b.json()["status"] == "accepted"
    wrong = await client.post(
        "/v1/events", json={**raw, "tenant_id": "globex"}, headers={"X-Tenant-ID": "acme"}
    )
    assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "tenant_id"


async def test_oversized_batches_get_413(settings: Settings, redis: Redis) -> None:
    app = create_app(settings.model_copy(update={"max_batch_events": 3, "max_body_bytes": 2048}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            too_many = await client.post("/v1/events/batch", json=[event(str(i)) for i in range(4)])
            assert too_many.status_code == 413
            assert "at most 3" in too_many.json()["error"]["message"]
            too_big = await client.post("/v1/events/batch", content=b"[" + b" " * 4096 + b"]")
            assert too_big.status_code == 413
    assert await redis.xlen("telemetry:events") == 0


async def test_backlog_past_the_limit_gives_429(settings: Settings, redis: Redis) -> None:
    app = create_app(settings.model_copy(update={"backlog_max_entries": 2}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for i in range(3):
                assert (
                    await client.post("/v1/events", json=event(f"e{i}", minute=i))
                ).status_code == 202
            refused = await client.post("/v1/events", json=event("late", minute=9))
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == str(settings.retry_after_s)
    # A refused event is not marked seen: its retry is accepted once there is room.
    marks = Enqueuer(redis, settings.stream, settings.dedupe_prefix)
    late_ts = 1_748_772_540_000_000  # tests.helpers.event("late", minute=9)
    assert not await marks.is_seen("default", "late", late_ts)
    assert await marks.is_seen("default", "e0", late_ts - 9 * 60_000_000)


async def test_redis_down_gives_503(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.post("/v1/events", json=event("x"))
            health = await client.get("/healthz")
    assert response.status_code == 503
    assert "Retry-After" in response.headers
    assert health.status_code == 200
