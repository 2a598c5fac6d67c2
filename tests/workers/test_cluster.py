"""Workers on Redis Cluster: every shard drained by one process in burst mode, each event
stored once, the latest write of a key winning, dead letters and replays per shard."""

from typing import Any

import asyncpg
import httpx
import orjson
from redis.asyncio.cluster import RedisCluster

from app.core.redis import as_redis
from app.core.settings import Settings
from app.core.shards import all_shards, assigned, shard
from app.core.streams import EventStream
from tests.fixtures.cluster import SHARDS, devices_on_every_shard
from tests.helpers import event, post_batch
from workers.deadletter import DeadLetters
from workers.shards import ShardedWorker


async def drain(settings: Settings, cluster: RedisCluster, name: str = "w1") -> ShardedWorker:
    worker = ShardedWorker(settings, as_redis(cluster), assigned(settings), name=name, burst=True)
    try:
        await worker.run()
    finally:
        await worker.close()
    return worker


async def backlogs(settings: Settings, cluster: RedisCluster) -> list[int]:
    return [
        (await EventStream(as_redis(cluster), s.stream, settings.group).backlog()).entries
        for s in all_shards(settings)
    ]


async def test_a_batch_across_shards_is_stored_once_and_the_latest_write_wins(
    cluster_settings: Settings,
    cluster_http: httpx.AsyncClient,
    cluster_client: RedisCluster,
    db: asyncpg.Connection,
) -> None:
    devices = devices_on_every_shard() + [f"more-{n}" for n in range(30)]
    batch = [
        event(f"e{n}-{minute}", device=device, minute=minute, temp=float(minute))
        for n, device in enumerate(devices)
        for minute in range(3)
    ]
    body = await post_batch(cluster_http, batch)
    assert body["accepted"] == len(batch)
    # Retries of the whole batch (duplicates) and corrections of minute 1 on every device,
    # each in its own later request: the corrections are the versions that must stay.
    assert (await post_batch(cluster_http, batch))["duplicate"] == len(batch)
    for n, device in enumerate(devices):
        await post_batch(cluster_http, [event(f"fix{n}", device=device, minute=1, temp=-1.0)])
    assert await backlogs(cluster_settings, cluster_client) != [0] * SHARDS
    worker = await drain(cluster_settings, cluster_client)
    # One read takes each shard whole: a correction replaces its original in the batch.
    assert worker.stored == len(batch)
    assert {w.shard.index for w in worker.workers if w.shard} == set(range(SHARDS))
    rows = await db.fetch("SELECT device_id, ts, event_id, metrics, seq FROM events")
    assert len(rows) == len(batch)
    keys = {(r["device_id"], r["ts"]) for r in rows}
    assert len(keys) == len(rows)
    for row in rows:
        metrics = orjson.loads(row["metrics"])
        if row["ts"].minute == 1:
            assert row["event_id"].startswith("fix") and metrics == {"temp": -1.0}
        else:
            assert metrics == {"temp": float(row["ts"].minute)}
    status = await db.fetch("SELECT value FROM device_status WHERE metric = 'temp'")
    assert sorted(r["value"] for r in status) == [2.0] * len(devices)
    assert await backlogs(cluster_settings, cluster_client) == [0] * SHARDS
    # A second pass finds nothing; a replay of every entry (a restart's redelivery) is a no-op.
    assert (await drain(cluster_settings, cluster_client, name="w2")).stored == 0
    for one in all_shards(cluster_settings):
        await cluster_client.xgroup_setid(one.stream, cluster_settings.group, id="0")
    assert (await drain(cluster_settings, cluster_client, name="w3")).stored > 0
    again = await db.fetch("SELECT device_id, ts, event_id, seq FROM events")
    assert sorted(map(tuple, again)) == sorted(
        (r["device_id"], r["ts"], r["event_id"], r["seq"]) for r in rows
    )


async def test_a_worker_consumes_only_its_shards_and_dead_letters_per_shard(
    cluster_settings: Settings,
    cluster_http: httpx.AsyncClient,
    cluster_client: RedisCluster,
    db: asyncpg.Connection,
) -> None:
    devices = devices_on_every_shard()
    await post_batch(cluster_http, [event(f"e{n}", device=d) for n, d in enumerate(devices)])
    bad = shard(cluster_settings, 4)
    await cluster_client.xadd(bad.stream, {"n": 1, "d": b"not json"})
    some = cluster_settings.model_copy(update={"worker_shards": "0-1,4"})
    worker = await drain(some, cluster_client)
    assert worker.stored == 3
    stored = {r["device_id"] for r in await db.fetch("SELECT device_id FROM events")}
    assert stored == {devices[0], devices[1], devices[4]}
    assert await backlogs(cluster_settings, cluster_client) == [0, 0, 1, 1, 0, 1]
    letters = DeadLetters(as_redis(cluster_client), bad.stream, bad.dead_letter_stream)
    page: Any = await letters.entries()
    assert [letter["d"] for letter in page] == ["not json"]
    for other in all_shards(cluster_settings):
        if other.index != 4:
            assert await cluster_client.xlen(other.dead_letter_stream) == 0
    # The other shards by another worker.
    await drain(cluster_settings.model_copy(update={"worker_shards": "2,3,5"}), cluster_client)
    assert len(await db.fetch("SELECT 1 FROM events")) == SHARDS
