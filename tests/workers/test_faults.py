"""Errors classed by what they mean: a fault of the system stalls nothing and loses nothing.

A worker whose database lacks the tables, or whose role lost INSERT, keeps its batch (no
ack, no dead letter, no delivery counted), says why, and stores it once the cause is fixed.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import httpx
import orjson
import psycopg
import pytest
from psycopg import sql
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.engine import make_url

from app.core.settings import Settings, dsn
from app.core.streams import entry_seq
from scripts.schema import upgrade
from tests.fixtures.worker import RunWorker
from tests.helpers import event, post_batch, wait_for
from workers.consumer import Worker
from workers.database import Database
from workers.deadletter import DeadLetters
from workers.writes import EventRow, ReadingRow, write_batch

STREAM = "telemetry:events"


def _admin(url: str) -> str:
    return make_url(dsn(url)).set(database="postgres").render_as_string(hide_password=False)


@pytest.fixture
def empty_database(settings: Settings) -> Any:
    """A database with no tables at all: migrations never ran there."""
    name = f"telemetry_empty_{uuid.uuid4().hex[:8]}"
    url = make_url(dsn(settings.database_url)).set(database=name)
    with psycopg.connect(_admin(settings.database_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield url.render_as_string(hide_password=False)
    with psycopg.connect(_admin(settings.database_url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


async def pending(redis: Redis) -> list[dict[str, Any]]:
    rows: Any = await redis.xpending_range(STREAM, "ingest", min="-", max="+", count=100)
    return [dict(row) for row in rows]


async def run_until_stuck(
    settings: Settings, redis: Redis, kind: str
) -> tuple[Worker, "asyncio.Task[None]"]:
    worker = Worker(settings, redis, Database(settings), name="stuck", burst=True)
    task = asyncio.create_task(worker.run())

    async def stuck() -> bool:
        return worker.fault is not None and worker.fault[0] == kind

    await wait_for(stuck)
    return worker, task


async def assert_untouched(redis: Redis, settings: Settings) -> None:
    """Nothing acknowledged, nothing dead-lettered, no extra delivery counted."""
    rows = await pending(redis)
    assert len(rows) == 1 and rows[0]["times_delivered"] == 1, rows
    assert await DeadLetters(redis, STREAM, settings.dead_letter_stream).size() == 0
    health: Any = await redis.get(f"{settings.worker_health_prefix}:stuck")
    assert health is not None and orjson.loads(health)["status"] == "fault"


async def test_missing_tables_stall_the_batch_until_migrated(
    client: httpx.AsyncClient, redis: Redis, settings: Settings, empty_database: str
) -> None:
    await post_batch(client, [event("a"), event("b", minute=1)])
    # Claimed again well within the idle limit while it waits: no other worker takes it.
    local = settings.model_copy(
        update={
            "database_url": empty_database,
            "claim_idle_ms": 600,
            "worker_health_interval_s": 0.05,
        }
    )
    worker, task = await run_until_stuck(local, redis, "UndefinedTableError")
    try:
        readyz = await client.get("/readyz")
        assert readyz.status_code == 200
        assert "UndefinedTableError" in readyz.json()["checks"]["workers"]["stuck"]
        await assert_untouched(redis, local)
        await asyncio.to_thread(upgrade, empty_database)
        await asyncio.wait_for(task, timeout=30)
    finally:
        task.cancel()
        await worker.database.close()
    assert worker.stored == 2 and worker.fault is None
    conn = await asyncpg.connect(dsn(empty_database))
    try:
        assert await conn.fetchval("SELECT count(*) FROM events") == 2
    finally:
        await conn.close()
    assert await pending(redis) == []


@pytest.fixture
async def writer_role(db: asyncpg.Connection, settings: Settings) -> AsyncIterator[str]:
    """A role that may read the tables but not write them; the test grants INSERT later."""
    role = f"writer_{uuid.uuid4().hex[:8]}"
    await db.execute(f"CREATE ROLE {role} LOGIN")
    await db.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
    await db.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    url = make_url(dsn(settings.database_url)).set(username=role)
    yield url.render_as_string(hide_password=False)
    await db.execute(f"REASSIGN OWNED BY {role} TO postgres; DROP OWNED BY {role}")
    await db.execute(f"DROP ROLE {role}")


async def test_a_role_without_insert_stalls_the_batch_until_granted(
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    redis: Redis,
    settings: Settings,
    writer_role: str,
) -> None:
    await post_batch(client, [event("a"), event("b", minute=1)])
    local = settings.model_copy(update={"database_url": writer_role, "claim_idle_ms": 600})
    worker, task = await run_until_stuck(local, redis, "InsufficientPrivilegeError")
    try:
        await assert_untouched(redis, local)
        role = make_url(writer_role).username
        await db.execute(f"GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
        await db.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}")
        await asyncio.wait_for(task, timeout=30)
    finally:
        task.cancel()
        await worker.database.close()
    assert worker.stored == 2
    assert await db.fetchval("SELECT count(*) FROM events") == 2
    assert await DeadLetters(redis, STREAM, settings.dead_letter_stream).size() == 0


async def test_a_transaction_that_times_out_is_halved_not_retried_whole(
    client: httpx.AsyncClient, db: asyncpg.Connection, redis: Redis, settings: Settings
) -> None:
    await post_batch(client, [event(f"e{i}", minute=i) for i in range(8)])
    sizes: list[int] = []

    async def slow_when_big(
        conn: asyncpg.Connection, events: Sequence[EventRow], readings: Sequence[ReadingRow]
    ) -> int:
        sizes.append(len(events))
        if len(events) > 2:
            await conn.execute("SELECT pg_sleep(5)")
        return await write_batch(conn, events, readings)

    local = settings.model_copy(update={"statement_timeout_ms": 200})
    database = Database(local)
    worker = Worker(local, redis, database, name="halver", burst=True, writer=slow_when_big)
    try:
        await asyncio.wait_for(worker.run(), timeout=30)
    finally:
        await database.close()
    assert sizes == [8, 4, 2, 2, 4, 2, 2]
    assert await db.fetchval("SELECT count(*) FROM events") == 8
    assert await DeadLetters(redis, STREAM, settings.dead_letter_stream).size() == 0


async def test_a_transaction_is_bounded_by_events_not_entries(
    client: httpx.AsyncClient, redis: Redis, settings: Settings, db: asyncpg.Connection
) -> None:
    for i in range(5):
        await post_batch(client, [event(f"e{i}a", minute=i), event(f"e{i}b", minute=i + 10)])
    await post_batch(client, [event(f"big{i}", minute=20 + i) for i in range(7)])
    sizes: list[int] = []

    async def counting(
        conn: asyncpg.Connection, events: Sequence[EventRow], readings: Sequence[ReadingRow]
    ) -> int:
        sizes.append(len(events))
        return await write_batch(conn, events, readings)

    local = settings.model_copy(update={"batch_max_events": 3, "batch_entries": 100})
    database = Database(local)
    worker = Worker(local, redis, database, name="bounded", burst=True, writer=counting)
    try:
        await worker.run()
    finally:
        await database.close()
    # Six entries read at once; each run holds at most 3 events, or one bigger entry alone.
    assert sizes == [2, 2, 2, 2, 2, 7]
    assert await db.fetchval("SELECT count(*) FROM events") == 17


async def test_a_failed_after_commit_step_is_retried_without_rewriting_storage(
    client: httpx.AsyncClient, db: asyncpg.Connection, redis: Redis, settings: Settings
) -> None:
    await post_batch(client, [event("a"), event("b", minute=1)])
    writes: list[int] = []
    calls: list[int] = []

    async def counting(
        conn: asyncpg.Connection, events: Sequence[EventRow], readings: Sequence[ReadingRow]
    ) -> int:
        writes.append(len(events))
        return await write_batch(conn, events, readings)

    async def flaky(events: Sequence[dict[str, Any]]) -> None:
        calls.append(len(events))
        if len(calls) < 3:
            raise RedisConnectionError("alert script unreachable")

    database = Database(settings)
    worker = Worker(
        settings, redis, database, name="flaky", burst=True, writer=counting, after_commit=flaky
    )
    try:
        await worker.run()
    finally:
        await database.close()
    assert writes == [2] and calls == [2, 2, 2]
    assert await pending(redis) == []
    assert await DeadLetters(redis, STREAM, settings.dead_letter_stream).size() == 0
    assert await db.fetchval("SELECT count(*) FROM events") == 2


async def test_a_replayed_dead_letter_keeps_its_place_behind_a_correction(
    client: httpx.AsyncClient, db: asyncpg.Connection, redis: Redis, settings: Settings,
    run_worker: RunWorker,
) -> None:  # fmt: skip
    dead = DeadLetters(redis, STREAM, settings.dead_letter_stream)
    # The original version is dead-lettered (say the database refused it at the time) ...
    await post_batch(client, [event("v1", minute=0, temp=1.0)])
    entries: Any = await redis.xreadgroup("ingest", "w0", {STREAM: ">"}, count=1)
    entry_id, fields = entries[0][1][0]
    original = orjson.loads(fields[b"d"])
    await dead.add_event({**original, "seq": entry_seq(entry_id)}, "refused", "w0")
    await redis.xack(STREAM, "ingest", entry_id)
    # ... the client then corrects it (same device and time, a new id and value) ...
    await post_batch(client, [event("v2", minute=0, temp=2.0)])
    await run_worker()
    # ... and the operator replays the dead letter afterwards.
    assert await dead.replay(dry_run=True) == 1 and await dead.size() == 1
    assert await dead.replay() == 1
    await run_worker()
    row = await db.fetchrow("SELECT event_id, metrics FROM events")
    assert row is not None and row["event_id"] == "v2"
    assert await db.fetchval("SELECT value FROM readings") == 2.0


async def test_a_replay_with_nothing_newer_is_stored(
    client: httpx.AsyncClient, db: asyncpg.Connection, redis: Redis, settings: Settings,
    run_worker: RunWorker,
) -> None:  # fmt: skip
    dead = DeadLetters(redis, STREAM, settings.dead_letter_stream)
    await post_batch(client, [event("only", minute=3)])
    entries: Any = await redis.xreadgroup("ingest", "w0", {STREAM: ">"}, count=1)
    entry_id, fields = entries[0][1][0]
    await dead.add_entry(entry_id, fields[b"d"], "delivered 6 times", "w0")
    await redis.xack(STREAM, "ingest", entry_id)
    assert await dead.replay() == 1
    await run_worker()
    assert await db.fetchval("SELECT seq FROM events") == entry_seq(entry_id)


async def test_the_dead_letter_stream_is_bounded_and_paged(redis: Redis) -> None:
    dead = DeadLetters(redis, STREAM, "test:dead", maxlen=100)
    for i in range(400):
        await dead.add_event({"event_id": f"e{i}", "seq": i}, "refused", "w")
    assert await dead.size() <= 200
    first = await dead.page(count=30)
    assert len(first.letters) == 30 and first.next_id is not None
    second = await dead.page(first.next_id, count=30)
    assert second.letters[0]["id"] == first.next_id
    last = second.letters[-1]["id"]
    assert await dead.replay(lo=first.letters[0]["id"], hi=last, dry_run=True) == 60
    assert await dead.size() <= 200


async def test_a_consumer_holding_entries_is_never_forgotten(
    client: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    await post_batch(client, [event("a")])
    await redis.xreadgroup("ingest", "holder", {STREAM: ">"}, count=1)
    janitor = Worker(
        settings.model_copy(update={"forget_consumer_after_ms": 0}),
        redis,
        Database(settings),
        name="janitor",
    )
    assert await janitor.forget_idle_consumers() == 0
    assert [row["consumer"] for row in await pending(redis)] == [b"holder"]
