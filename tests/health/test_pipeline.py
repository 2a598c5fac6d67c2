"""GET /v1/pipeline: the ingest rate, the queue and its consumers, dead letters, the rollup
lag and the workers, on a real stream and database."""

import asyncpg
import httpx
import orjson
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.core.settings import Settings
from app.ingest.rate import IngestRate
from tests.fixtures.worker import RunWorker
from tests.helpers import post_batch
from tests.reads.test_reads import reading, refresh, reset_rollups

EVENTS = [
    reading(str(i), f"d{i % 3}", f"2025-06-01T10:0{i}:00Z", power_w=float(i)) for i in range(6)
]


async def _pipeline(client: httpx.AsyncClient) -> dict[str, object]:
    response = await client.get("/v1/pipeline")
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_backlog_then_consumers_rate_and_workers_after_a_run(
    app: FastAPI, client: httpx.AsyncClient, run_worker: RunWorker, db: asyncpg.Connection
) -> None:
    await reset_rollups(db)
    empty = await _pipeline(client)
    assert empty["stream"] == {"name": "telemetry:events", "length": 0, "backlog": 0,
                               "oldest_pending_age_s": 0.0}  # fmt: skip
    assert empty["consumers"] == [] and empty["workers"] == []
    assert empty["dead_letters"] == 0 and empty["rollup_watermark_lag_s"] is None
    assert empty["database"] == "ok" and empty["ingest_rate_per_s"] == 0

    await post_batch(client, EVENTS[:3])
    await post_batch(client, EVENTS[3:])
    await app.state.ingest_rate.flush()
    queued = await _pipeline(client)
    assert queued["stream"]["length"] == 2 and queued["stream"]["backlog"] == 2  # type: ignore[index]
    # 6 events over the 30 s window.
    assert queued["ingest_rate_per_s"] == pytest.approx(6 / 30, abs=1e-3)
    assert queued["ingest_rate_window_s"] == 30

    await run_worker("w-pipe")
    drained = await _pipeline(client)
    assert drained["stream"]["backlog"] == 0  # type: ignore[index]
    assert drained["stream"]["oldest_pending_age_s"] == 0.0  # type: ignore[index]
    consumers = drained["consumers"]
    assert isinstance(consumers, list) and [c["name"] for c in consumers] == ["w-pipe"]
    assert consumers[0]["pending"] == 0 and consumers[0]["idle_ms"] >= 0
    # A worker that stopped took its health key with it; its consumer stays in the group.
    assert drained["workers"] == []


async def test_dead_letters_and_rollup_lag(
    client: httpx.AsyncClient, redis: Redis, db: asyncpg.Connection, settings: Settings
) -> None:
    await reset_rollups(db)
    await redis.xadd(settings.dead_letter_stream, {"reason": "test"})
    await redis.xadd(settings.dead_letter_stream, {"reason": "test"})
    await refresh(settings)
    body = await _pipeline(client)
    assert body["dead_letters"] == 2
    lag = body["rollup_watermark_lag_s"]
    # The watermark trails now by the refresh lag (60 s), rounded to a minute.
    assert isinstance(lag, float) and settings.refresh_lag_s <= lag < settings.refresh_lag_s + 61


async def test_live_workers_are_listed_as_readyz_lists_them(
    client: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    # The keys as workers write them (workers/consumer.py _write_health).
    for name, fault in (("w1", None), ("w9", "OperationalError")):
        body = {"name": name, "status": "fault" if fault else "ok", "fault": fault,
                "detail": "brownout" if fault else None, "stored": 3, "at": 0}  # fmt: skip
        await redis.set(f"{settings.worker_health_prefix}:{name}", orjson.dumps(body), ex=60)
    workers = (await _pipeline(client))["workers"]
    ready = (await client.get("/readyz")).json()["checks"]["workers"]
    assert workers == [{"name": "w1", "status": "ok"},
                       {"name": "w9", "status": "fault: OperationalError: brownout"}]  # fmt: skip
    assert ready == {w["name"]: w["status"] for w in workers}


async def test_the_rate_is_fleet_wide_and_windowed(redis: Redis) -> None:
    now = [1_000_000.0]
    totals = {"one": 0.0, "two": 0.0}
    one = IngestRate(redis, "test:rate", read_total=lambda: totals["one"], clock=lambda: now[0])
    two = IngestRate(redis, "test:rate", read_total=lambda: totals["two"], clock=lambda: now[0])
    totals["one"], totals["two"] = 30.0, 60.0
    await one.flush()
    await two.flush()
    await two.flush()  # nothing new: nothing added
    assert await one.per_second(30) == 3.0
    now[0] += 10
    totals["one"] = 330.0
    await one.flush()
    assert await two.per_second(10) == 30.0  # the first second left this window
    assert await two.per_second(30) == 13.0
    now[0] += 30
    assert await one.per_second(30) == 0.0


async def test_a_redis_outage_keeps_the_count_for_the_next_flush(redis: Redis) -> None:
    totals = [0.0]
    rate = IngestRate(redis, "test:rate2", read_total=lambda: totals[0], clock=lambda: 5_000.0)
    totals[0] = 12.0
    broken = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    rate.redis = broken
    with pytest.raises(RedisError):
        await rate.flush()
    await broken.aclose()
    rate.redis = redis
    await rate.flush()
    assert await rate.per_second(1) == 12.0
