"""`accepted` only on a queue that keeps it: each kind of Redis, started privately."""

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from app.core.settings import Settings
from app.main import create_app
from tests.fixtures.redis import StartRedis
from tests.helpers import event, wait_for
from workers.consumer import Worker
from workers.database import Database


@asynccontextmanager
async def api(settings: Settings, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(settings.model_copy(update=overrides))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


async def test_a_volatile_queue_refuses_ingest_with_the_reason(
    settings: Settings, private_redis: StartRedis
) -> None:
    volatile = await private_redis("--appendonly", "no")
    async with api(settings, redis_url=volatile.url, allow_volatile_queue=False) as client:
        response = await client.post("/v1/events", json=event("v1"))
        batch = await client.post("/v1/events/batch", json=[event("v2")])
        ready = await client.get("/readyz")
    for refused in (response, batch):
        assert refused.status_code == 503
        assert "appendonly" in refused.json()["error"]["message"]
        assert "Retry-After" in refused.headers
    assert ready.status_code == 503
    assert "appendonly yes" in ready.json()["checks"]["queue"]["status"]
    check = Redis.from_url(volatile.url)
    assert await check.xlen(settings.stream) == 0
    await check.aclose()


async def test_allow_volatile_queue_accepts_and_warns(
    settings: Settings, private_redis: StartRedis, caplog: pytest.LogCaptureFixture
) -> None:
    volatile = await private_redis("--appendonly", "no")
    with caplog.at_level(logging.WARNING, logger="app.ingest"):
        async with api(settings, redis_url=volatile.url, allow_volatile_queue=True) as client:
            response = await client.post("/v1/events", json=event("v1"))
    assert response.status_code == 202
    assert any("ALLOW_VOLATILE_QUEUE" in r.getMessage() for r in caplog.records)


async def test_aof_everysec_meets_the_default_and_an_evicting_policy_does_not(
    settings: Settings, private_redis: StartRedis
) -> None:
    aof = await private_redis("--appendonly", "yes", "--appendfsync", "everysec")
    async with api(settings, redis_url=aof.url, allow_volatile_queue=False) as client:
        accepted = await client.post("/v1/events", json=event("a1"))
        ready = await client.get("/readyz")
    assert accepted.status_code == 202, accepted.text
    assert ready.json()["checks"]["queue"]["durability"] == "os-buffered"
    lru = await private_redis("--appendonly", "yes", "--maxmemory-policy", "allkeys-lru")
    async with api(settings, redis_url=lru.url, allow_volatile_queue=False) as client:
        refused = await client.post("/v1/events", json=event("a2"))
    assert refused.status_code == 503
    assert "maxmemory-policy noeviction" in refused.json()["error"]["message"]
    fsync = await private_redis("--appendonly", "yes", "--appendfsync", "always")
    async with api(
        settings, redis_url=aof.url, allow_volatile_queue=False, required_durability="fsync"
    ) as client:
        below = await client.post("/v1/events", json=event("a3"))
    async with api(
        settings, redis_url=fsync.url, allow_volatile_queue=False, required_durability="fsync"
    ) as client:
        met = await client.post("/v1/events", json=event("a4"))
    assert below.status_code == 503 and "appendfsync always" in below.json()["error"]["message"]
    assert met.status_code == 202


async def test_replicated_waits_for_the_replica_and_the_retry_is_a_duplicate(
    settings: Settings, private_redis: StartRedis, db: Any
) -> None:
    primary = await private_redis("--appendonly", "yes")
    replica = await private_redis(
        "--appendonly", "yes", "--replicaof", "127.0.0.1", str(primary.port)
    )
    primary_client = Redis.from_url(primary.url)

    async def replica_connected() -> bool:
        # Online, not only connected: during its first sync a replica acknowledges nothing.
        info: Any = await primary_client.info("replication")
        replica_info = info.get("slave0") or {}
        return int(info.get("connected_slaves", 0)) == 1 and replica_info.get("state") == "online"

    await wait_for(replica_connected)
    overrides: dict[str, Any] = {
        "redis_url": primary.url,
        "allow_volatile_queue": False,
        "required_durability": "replicated",
        "replica_wait_ms": 300,
        # The replica dies between two durability checks: the WAIT is what catches it.
        "durability_check_interval_s": 60,
    }
    async with api(settings, **overrides) as client:
        first = await client.post("/v1/events", json=event("r1"))
        assert first.status_code == 202, first.text
        replica.stop(kill=True)
        started = time.monotonic()
        lost = await client.post("/v1/events", json=event("r2", minute=1))
        assert lost.status_code == 503, lost.text
        assert time.monotonic() - started < 2.0
        assert "retry is safe" in lost.json()["error"]["message"]
        # "duplicate" acknowledges too: while no replica confirms the first append, a retry
        # is not told its event is safe.
        early = await client.post("/v1/events", json=event("r2", minute=1))
        assert early.status_code == 503, early.text
        replica.launch()
        await wait_for(replica_connected)
        retried = await client.post("/v1/events", json=event("r2", minute=1))
    assert retried.status_code == 202
    assert retried.json()["status"] == "duplicate"
    database = Database(settings)
    try:
        await Worker(settings, primary_client, database, name="w", burst=True).run()
    finally:
        await database.close()
        await primary_client.aclose()
    stored = await db.fetch("SELECT event_id FROM events ORDER BY event_id")
    assert [r["event_id"] for r in stored] == ["r1", "r2"]
