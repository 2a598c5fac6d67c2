"""The worker fleet against real Redis and PostgreSQL: stored once, newest wins, nothing lost."""

import asyncio
import time
from typing import Any

import asyncpg
import httpx
import orjson
from redis.asyncio import Redis

from app.core.settings import Settings
from app.core.streams import EventStream
from app.ingest.contract import Limits, normalise
from tests.fixtures.worker import RunWorker
from tests.helpers import event, post_batch, wait_for
from workers.consumer import Worker
from workers.database import Database
from workers.deadletter import DeadLetters

STREAM = "telemetry:events"


async def counts(db: asyncpg.Connection) -> tuple[int, int, int]:
    row = await db.fetchrow(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM readings),"
        " (SELECT count(*) FROM device_status)"
    )
    assert row is not None
    return row[0], row[1], row[2]


async def test_accepted_events_are_stored_once(
    client: httpx.AsyncClient, db: asyncpg.Connection, redis: Redis, run_worker: RunWorker
) -> None:
    await post_batch(client, [event("a", minute=1, temp=1.0, hum=50.0), event("b", minute=2)])
    await client.post("/v1/events", json=event("c", device="d2", minute=3))
    worker = await run_worker()
    assert worker.stored == 3
    assert await counts(db) == (3, 4, 3)
    row = await db.fetchrow("SELECT * FROM events WHERE event_id = 'a'")
    assert row is not None
    assert orjson.loads(row["metrics"]) == {"temp": 1.0, "hum": 50.0}
    assert row["site_id"] == "site-1"
    pending = await redis.xpending(STREAM, "ingest")
    assert pending["pending"] == 0
    # Running again over the same stream stores nothing new.
    await run_worker(name="w2")
    assert await counts(db) == (3, 4, 3)


async def test_duplicates_after_a_worker_restart_are_stored_once(
    client: httpx.AsyncClient, db: asyncpg.Connection, run_worker: RunWorker
) -> None:
    await post_batch(client, [event("a"), event("a")])
    await run_worker(name="first")
    second = await post_batch(client, [event("a"), event("b", minute=1)])
    assert [r["status"] for r in second["results"]] == ["duplicate", "accepted"]
    await run_worker(name="second")
    assert (await counts(db))[0] == 2


async def test_out_of_order_events_are_stored_and_status_keeps_the_newest(
    client: httpx.AsyncClient, db: asyncpg.Connection, run_worker: RunWorker
) -> None:
    await post_batch(client, [event("late2", minute=5, temp=5.0)])
    await post_batch(client, [event("early", minute=1, temp=1.0), event("mid", minute=3, temp=3.0)])
    await run_worker()
    minutes = [r["ts"].minute for r in await db.fetch("SELECT ts FROM events ORDER BY ts")]
    assert minutes == [1, 3, 5]
    status = await db.fetchrow("SELECT ts, value FROM device_status WHERE metric = 'temp'")
    assert status is not None and status["value"] == 5.0 and status["ts"].minute == 5


async def test_later_write_of_the_same_key_wins_with_workers_racing(
    client: httpx.AsyncClient, db: asyncpg.Connection, settings: Settings, redis: Redis
) -> None:
    # Forty versions of ten keys, each version its own entry; the last entry must win.
    for version in range(40):
        await post_batch(
            client,
            [
                {
                    **event(f"v{version}-{key}", device=f"d{key}", minute=0),
                    "metrics": {"temp": float(version)},
                }
                for key in range(10)
            ],
        )
    small = settings.model_copy(update={"batch_entries": 3})
    workers = [
        Worker(small, redis, Database(small), name=f"racer{i}", burst=True) for i in range(4)
    ]
    await asyncio.gather(*(w.run() for w in workers))
    for w in workers:
        await w.database.close()
    rows = await db.fetch("SELECT device_id, event_id, metrics FROM events ORDER BY device_id")
    assert len(rows) == 10
    assert all(row["event_id"].startswith("v39-") for row in rows)
    values = await db.fetch("SELECT DISTINCT value FROM readings")
    assert [v["value"] for v in values] == [39.0]
    assert {r["value"] for r in await db.fetch("SELECT value FROM device_status")} == {39.0}


async def test_a_replacing_write_drops_metrics_it_no_longer_has(
    client: httpx.AsyncClient, db: asyncpg.Connection, run_worker: RunWorker
) -> None:
    await post_batch(client, [event("v1", minute=0, temp=1.0, hum=2.0)])
    await run_worker()
    await post_batch(client, [event("v2", minute=0, temp=3.0)])
    await run_worker()
    rows = await db.fetch("SELECT metric, value FROM readings")
    assert [(r["metric"], r["value"]) for r in rows] == [("temp", 3.0)]


async def test_replaying_an_old_entry_does_not_undo_a_newer_write(
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    redis: Redis,
    settings: Settings,
    run_worker: RunWorker,
) -> None:
    await post_batch(client, [event("old", minute=0, temp=1.0)])
    await post_batch(client, [event("new", minute=0, temp=2.0)])
    await run_worker()
    entries: Any = await redis.xrange(STREAM)
    # Put the first entry through again, as a reclaim after a crash would.
    worker = Worker(settings, redis, Database(settings), name="replay")
    await worker.process([entries[0]])
    await worker.database.close()
    row = await db.fetchrow("SELECT event_id FROM events")
    assert row is not None and row["event_id"] == "new"


async def test_an_entry_a_killed_worker_never_acked_is_reclaimed_once(
    client: httpx.AsyncClient, db: asyncpg.Connection, redis: Redis, run_worker: RunWorker
) -> None:
    await post_batch(client, [event("a"), event("b", minute=1)])
    # A consumer reads the entry and dies before storing or acknowledging it.
    await redis.xreadgroup("ingest", "dead-consumer", {STREAM: ">"}, count=10)
    assert (await redis.xpending(STREAM, "ingest"))["pending"] == 1
    await run_worker(name="rescuer", claim_idle_ms=0)
    assert (await counts(db))[0] == 2
    assert (await redis.xpending(STREAM, "ingest"))["pending"] == 0
    await run_worker(name="again", claim_idle_ms=0)
    assert (await counts(db))[0] == 2


async def test_an_entry_delivered_too_often_is_dead_lettered(
    client: httpx.AsyncClient, db: asyncpg.Connection, redis: Redis, run_worker: RunWorker
) -> None:
    await post_batch(client, [event("a")])
    await redis.xreadgroup("ingest", "crashy", {STREAM: ">"}, count=10)
    entries: Any = await redis.xrange(STREAM)
    entry_id = entries[0][0]
    # Each crash and reclaim is one more delivery.
    await redis.xclaim(STREAM, "ingest", "crashy", 0, [entry_id])
    await redis.xclaim(STREAM, "ingest", "crashy", 0, [entry_id])
    await run_worker(name="judge", claim_idle_ms=0, max_deliveries=3)
    assert (await counts(db))[0] == 0
    dead = await DeadLetters(redis, STREAM, "telemetry:dead").entries()
    assert len(dead) == 1 and dead[0]["kind"] == "entry" and "4 times" in dead[0]["error"]
    assert (await redis.xpending(STREAM, "ingest"))["pending"] == 0
    # Replayed from the dead-letter stream, it is stored.
    assert await DeadLetters(redis, STREAM, "telemetry:dead").replay() == 1
    await run_worker(name="after-replay")
    assert (await counts(db))[0] == 1


def canonical(raw: dict[str, Any]) -> bytes:
    """An event as the API enqueues it, without the API's checks."""
    limits = Limits(
        now_us=time.time_ns() // 1000,
        max_future_skew_us=300_000_000,
        retention_us=3650 * 86_400_000_000,
        max_name_length=128,
        max_tags=64,
        max_metrics=256,
    )
    return orjson.dumps(normalise(raw, "default", limits))


async def test_a_poison_event_is_isolated_from_its_neighbours(
    db: asyncpg.Connection, redis: Redis, run_worker: RunWorker
) -> None:
    # PostgreSQL refuses NUL in text. The edge refuses it too now, so the poison is put on the
    # stream directly, as an older API or another producer could: the worker must still
    # isolate it from the seven good events of its entry.
    lines = [canonical(event(f"ok{i}", minute=i)) for i in range(7)]
    poison = orjson.loads(canonical(event("poison", minute=30)))
    lines.insert(4, orjson.dumps({**poison, "device_id": "bad\u0000device"}))
    await EventStream(redis, STREAM, "ingest").ensure_group()
    await redis.xadd(STREAM, {"n": len(lines), "d": b"\n".join(lines)})
    await redis.xadd(STREAM, {"n": 1, "d": b"{not json"})
    await run_worker()
    assert (await counts(db))[0] == 7
    dead = await DeadLetters(redis, STREAM, "telemetry:dead").entries()
    kinds = sorted(
        (d["kind"], orjson.loads(d["d"])["event_id"] if d["kind"] == "event" else "") for d in dead
    )
    assert kinds == [("entry", ""), ("event", "poison")]
    assert (await redis.xpending(STREAM, "ingest"))["pending"] == 0


class OutageDatabase(Database):
    """Kills its own server connection in the middle of the first batch: a real outage."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.outages = 0

    async def connection(self) -> asyncpg.Connection:
        conn = await super().connection()
        if self.outages < 2:
            self.outages += 1
            pid = conn.get_server_pid()
            killer = await asyncpg.connect(self.settings.database_url.replace("+asyncpg", ""))
            await killer.execute("SELECT pg_terminate_backend($1)", pid)
            await killer.close()
        return conn


async def test_a_database_outage_mid_batch_loses_nothing(
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    redis: Redis,
    settings: Settings,
    run_worker: RunWorker,
) -> None:
    await post_batch(client, [event(f"e{i}", minute=i) for i in range(20)])
    database = OutageDatabase(settings)
    await run_worker(database=database)
    assert database.outages == 2
    assert (await counts(db))[0] == 20
    assert (await redis.xpending(STREAM, "ingest"))["pending"] == 0


async def test_trim_keeps_what_is_not_acknowledged(
    client: httpx.AsyncClient, redis: Redis, settings: Settings, run_worker: RunWorker
) -> None:
    for i in range(5):
        await post_batch(client, [event(f"a{i}", minute=i)])
    await run_worker()
    for i in range(3):
        await post_batch(client, [event(f"b{i}", minute=10 + i)])
    await redis.xreadgroup("ingest", "slow", {STREAM: ">"}, count=1)
    worker = Worker(settings, redis, Database(settings), name="trimmer", burst=True)
    await worker.trim()
    # Approximate trimming may keep more, never less: the three unacked entries stay.
    remaining: Any = await redis.xrange(STREAM)
    assert len(remaining) >= 3
    stream = EventStream(redis, STREAM, "ingest")
    backlog = await stream.backlog()
    assert backlog.entries == 3


async def test_a_worker_recreates_a_vanished_group_and_stores_what_follows(
    client: httpx.AsyncClient, db: asyncpg.Connection, redis: Redis, settings: Settings
) -> None:
    worker = Worker(settings, redis, Database(settings), name="survivor")
    task = asyncio.create_task(worker.run())
    try:
        await post_batch(client, [event("before", minute=0)])
        await wait_for(lambda: _count_is(db, 1))
        # Redis lost everything (restarted without persistence): stream and group are gone.
        await redis.flushdb()
        assert (await worker.stream.backlog()).entries == 0
        await worker.trim()
        await post_batch(client, [event("after", minute=1)])
        await wait_for(lambda: _count_is(db, 2))
    finally:
        worker.stop()
        await task
        await worker.database.close()


async def _count_is(db: asyncpg.Connection, expected: int) -> bool:
    count: int = await db.fetchval("SELECT count(*) FROM events")
    return count == expected


async def test_idle_consumers_holding_nothing_are_forgotten(
    client: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    await post_batch(client, [event("a")])
    await post_batch(client, [event("b", minute=1)])
    await redis.xreadgroup("ingest", "holder", {STREAM: ">"}, count=1)
    await redis.xreadgroup("ingest", "idle-empty", {STREAM: ">"}, count=1)
    entries: Any = await redis.xrange(STREAM)
    await redis.xack(STREAM, "ingest", entries[1][0])
    worker = Worker(
        settings.model_copy(update={"forget_consumer_after_ms": 0}),
        redis,
        Database(settings),
        name="janitor",
    )
    assert await worker.forget_idle_consumers() == 1
    names = {c["name"] for c in await redis.xinfo_consumers(STREAM, "ingest")}
    assert names == {b"holder"}
