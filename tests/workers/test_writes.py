"""The write path's two ways: the COPY fast path for new keys, the staged upsert otherwise.

Batches that hit the same keys in turn take one path or the other, and the tables end as
if every batch had been upserted: latest write wins by sequence, replays change nothing,
the device status is the newest reading, every touched minute is recorded.
"""

from typing import Any

import asyncpg
import orjson

from workers import writes
from workers.batch import event_rows

T0 = 1_748_772_000_000_000  # 2025-06-01T10:00:00Z in µs


def batch(seq: int, *items: tuple[str, int, float]) -> list[dict[str, Any]]:
    return [
        {"event_id": f"{key}@{seq}", "tenant_id": "t", "device_id": "d", "site_id": "s",
         "ts": T0 + minute * 60_000_000, "metrics": {"temp": value}, "tags": [], "seq": seq}
        for key, minute, value in items
    ]  # fmt: skip


async def write(conn: asyncpg.Connection, events: list[dict[str, Any]]) -> tuple[bool, int]:
    """(took the fast path, events that won) for one batch in its own transaction."""
    rows, readings = event_rows(events)
    async with conn.transaction():
        fast = await writes.write_new(conn, rows, readings)
        won = len(rows) if fast else await writes.upsert_batch(conn, rows, readings)
    return fast, won


async def test_fast_path_and_fallback_batches_on_the_same_keys(db: asyncpg.Connection) -> None:
    await writes.prepare(db)
    await db.execute("TRUNCATE rollup_dirty")
    assert await write(db, batch(10, ("a", 0, 1.0), ("b", 1, 2.0))) == (True, 2)
    # "b" exists: the COPY is refused, the upsert replaces it and inserts "c".
    assert await write(db, batch(20, ("b", 1, 3.0), ("c", 2, 4.0))) == (False, 2)
    # A replay of the first batch (older sequence): the upsert keeps the newer versions.
    assert await write(db, batch(10, ("a", 0, 1.0), ("b", 1, 2.0))) == (False, 0)
    # New keys again: the fast path, whatever came before.
    assert await write(db, batch(30, ("d", 3, 5.0))) == (True, 1)
    # A late, older version of "c" (sequence 15 < 20) after the fast path: ignored.
    assert await write(db, batch(15, ("c", 2, 9.0))) == (False, 0)

    rows = await db.fetch("SELECT event_id, seq, metrics FROM events ORDER BY ts")
    assert [(r["event_id"], r["seq"], orjson.loads(r["metrics"])["temp"]) for r in rows] == [
        ("a@10", 10, 1.0), ("b@20", 20, 3.0), ("c@20", 20, 4.0), ("d@30", 30, 5.0),
    ]  # fmt: skip
    readings = await db.fetch("SELECT value, seq FROM readings ORDER BY ts")
    assert [(r["value"], r["seq"]) for r in readings] == [
        (1.0, 10),
        (3.0, 20),
        (4.0, 20),
        (5.0, 30),
    ]
    status = await db.fetchrow("SELECT value, seq FROM device_status WHERE metric = 'temp'")
    assert status is not None and (status["value"], status["seq"]) == (5.0, 30)
    minutes = await db.fetch("SELECT DISTINCT minute FROM rollup_dirty ORDER BY minute")
    assert len(minutes) == 4


async def test_the_fast_path_status_is_the_newest_reading(db: asyncpg.Connection) -> None:
    await writes.prepare(db)
    # Out of order in the batch, and an older status row already stored.
    await db.execute(
        "INSERT INTO device_status (tenant_id, device_id, metric, ts, value, site_id, seq)"
        " VALUES ('t', 'd', 'temp', to_timestamp(0), -1, 's', 1)"
    )
    fast, _ = await write(db, batch(40, ("late", 5, 7.0), ("early", 4, 6.0)))
    assert fast
    status = await db.fetchrow("SELECT value FROM device_status WHERE metric = 'temp'")
    assert status is not None and status["value"] == 7.0
