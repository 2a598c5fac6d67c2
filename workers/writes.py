"""The batch write path: a COPY fast path, and COPY into staging then set-based upserts.

Identity is (tenant, device, ts); ``seq`` is the stream entry id as one integer, so a row
is only replaced by a write that entered the stream later, and replaying an entry is a
no-op. Rows go in sorted by key so concurrent workers lock rows in the same order.

With the edge's dedupe in front, almost every batch touches only new keys, yet an upsert
pays for the conflict check on every row. So a batch is first COPied straight into
`events` and `readings` inside a savepoint: when no key exists yet (the usual case) that is
all, plus the device status and the rollup bookkeeping; when one does (a replay, a
correction, a duplicate past the dedupe window, or a racing worker that committed the same
key first), the primary key refuses it, the savepoint rolls back and the staged upsert runs
with every guarantee as before. Racing workers that COPY the same new key wait on each
other's index entry; the loser's savepoint then falls back.
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

EventRow = tuple[str, str, int, str, str | None, str, list[str], int]
ReadingRow = tuple[str, str, str, int, str | None, float, int]

EVENT_COLUMNS = ("tenant_id", "device_id", "ts_us", "event_id", "site_id", "metrics", "tags", "seq")
READING_COLUMNS = ("tenant_id", "device_id", "metric", "ts_us", "site_id", "value", "seq")

STAGING = """
CREATE TEMP TABLE IF NOT EXISTS stage_events (
    tenant_id text COLLATE "C", device_id text COLLATE "C", ts_us bigint,
    event_id text COLLATE "C", site_id text COLLATE "C",
    metrics jsonb, tags text[], seq bigint
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_readings (
    tenant_id text COLLATE "C", device_id text COLLATE "C", metric text COLLATE "C",
    ts_us bigint, site_id text COLLATE "C",
    value double precision, seq bigint
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS won (
    tenant_id text COLLATE "C", device_id text COLLATE "C", ts timestamptz, seq bigint,
    replaced boolean
) ON COMMIT DELETE ROWS;
"""

TS_EXPR = "(timestamptz 'epoch' + {col} * interval '1 microsecond')"

# The events upsert around a source of rows; the rows that won land in `won`.
EVENTS_UPSERT = """
WITH up AS (
    INSERT INTO events AS e (tenant_id, device_id, ts, event_id, site_id, metrics, tags, seq)
    {source}
    ON CONFLICT (tenant_id, device_id, ts) DO UPDATE
    SET event_id = excluded.event_id, site_id = excluded.site_id, metrics = excluded.metrics,
        tags = excluded.tags, seq = excluded.seq, received_at = now()
    WHERE e.seq < excluded.seq
    RETURNING e.tenant_id, e.device_id, e.ts, e.seq, e.xmax::text <> '0' AS replaced
)
INSERT INTO won SELECT * FROM up
"""

UPSERT_EVENTS = EVENTS_UPSERT.format(
    source=f"""SELECT tenant_id, device_id, {TS_EXPR.format(col="ts_us")}, event_id, site_id,
        metrics, tags, seq
    FROM stage_events
    ORDER BY tenant_id, device_id, ts_us"""
)

# When every staged event won (the usual case) the join with `won` is skipped.
_WON_ROWS = f"""
FROM stage_readings s
JOIN won w ON w.tenant_id = s.tenant_id AND w.device_id = s.device_id
    AND w.ts = {TS_EXPR.format(col="s.ts_us")} AND w.seq = s.seq"""
_ALL_ROWS = "\nFROM stage_readings s"

_READINGS = f"""
INSERT INTO readings AS r (tenant_id, device_id, metric, ts, site_id, value, seq)
SELECT s.tenant_id, s.device_id, s.metric, {TS_EXPR.format(col="s.ts_us")}, s.site_id, s.value, s.seq
{{rows}}
ORDER BY s.tenant_id, s.device_id, s.metric, s.ts_us
ON CONFLICT (tenant_id, device_id, metric, ts) DO UPDATE
SET site_id = excluded.site_id, value = excluded.value, seq = excluded.seq
WHERE r.seq < excluded.seq
"""

_STATUS = f"""
INSERT INTO device_status AS d (tenant_id, device_id, metric, ts, value, site_id, seq)
SELECT DISTINCT ON (s.tenant_id, s.device_id, s.metric)
    s.tenant_id, s.device_id, s.metric, {TS_EXPR.format(col="s.ts_us")}, s.value, s.site_id, s.seq
{{rows}}
ORDER BY s.tenant_id, s.device_id, s.metric, s.ts_us DESC, s.seq DESC
ON CONFLICT (tenant_id, device_id, metric) DO UPDATE
SET ts = excluded.ts, value = excluded.value, site_id = excluded.site_id, seq = excluded.seq,
    updated_at = now()
WHERE (d.ts, d.seq) < (excluded.ts, excluded.seq)
"""

UPSERT_READINGS = _READINGS.format(rows=_WON_ROWS)
UPSERT_READINGS_ALL = _READINGS.format(rows=_ALL_ROWS)
UPSERT_STATUS = _STATUS.format(rows=_WON_ROWS)
UPSERT_STATUS_ALL = _STATUS.format(rows=_ALL_ROWS)

# A replacing write may carry fewer metrics than the row it replaced: drop the readings the
# new version no longer has. device_status lists every metric a device ever sent, which
# turns this into primary-key probes instead of a scan of the device's readings.
DELETE_STALE_READINGS = """
DELETE FROM readings r
USING won w
JOIN device_status d ON d.tenant_id = w.tenant_id AND d.device_id = w.device_id
WHERE w.replaced
    AND r.tenant_id = w.tenant_id AND r.device_id = w.device_id
    AND r.metric = d.metric AND r.ts = w.ts AND r.seq < w.seq
"""

# The minutes this batch changed, for the rollup refresher (workers/refresher.py); in the
# batch's own transaction, so a committed write is never missing from the list.
RECORD_TOUCHED = """
INSERT INTO rollup_dirty (minute)
SELECT DISTINCT date_bin('1 minute', ts, timestamptz 'epoch') FROM won
"""


async def prepare(conn: asyncpg.Connection) -> None:
    """Create the connection's staging tables; call once per new connection."""
    await conn.execute(STAGING)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class _Stamps(dict[int, datetime]):
    """Epoch microseconds to datetimes, each made once: a batch's readings share their
    event's timestamp, and making a datetime per reading was a sixth of a worker's CPU."""

    def __missing__(self, us: int) -> datetime:
        stamp = self[us] = _EPOCH + us * _US
        return stamp


FAST_EVENT_COLUMNS = (
    "tenant_id",
    "device_id",
    "ts",
    "event_id",
    "site_id",
    "metrics",
    "tags",
    "seq",
)
FAST_READING_COLUMNS = ("tenant_id", "device_id", "metric", "ts", "site_id", "value", "seq")

STATUS_ROWS = """
INSERT INTO device_status AS d (tenant_id, device_id, metric, ts, value, site_id, seq)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::float8[],
                     $6::text[], $7::bigint[])
ON CONFLICT (tenant_id, device_id, metric) DO UPDATE
SET ts = excluded.ts, value = excluded.value, site_id = excluded.site_id, seq = excluded.seq,
    updated_at = now()
WHERE (d.ts, d.seq) < (excluded.ts, excluded.seq)
"""

RECORD_MINUTES = "INSERT INTO rollup_dirty (minute) SELECT unnest($1::timestamptz[])"


async def write_batch(
    conn: asyncpg.Connection, events: Sequence[EventRow], readings: Sequence[ReadingRow]
) -> int:
    """Write one batch inside the caller's transaction; returns how many events won."""
    if await write_new(conn, events, readings):
        return len(events)
    return await upsert_batch(conn, events, readings)


async def write_new(
    conn: asyncpg.Connection, events: Sequence[EventRow], readings: Sequence[ReadingRow]
) -> bool:
    """The fast path: COPY straight into the tables; False (and nothing written) when a key
    of the batch exists already."""
    stamps = _Stamps()
    event_rows = sorted((t, d, stamps[u], i, site, m, g, q) for t, d, u, i, site, m, g, q in events)
    reading_rows = sorted(
        (t, d, metric, stamps[u], site, v, q) for t, d, metric, u, site, v, q in readings
    )
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "events", records=event_rows, columns=FAST_EVENT_COLUMNS
            )
            await conn.copy_records_to_table(
                "readings", records=reading_rows, columns=FAST_READING_COLUMNS
            )
    except asyncpg.UniqueViolationError:
        return False
    newest: dict[tuple[str, str, str], tuple[Any, ...]] = {}
    for row in reading_rows:
        key = (row[0], row[1], row[2])
        known = newest.get(key)
        if known is None or (known[3], known[6]) < (row[3], row[6]):
            newest[key] = row
    if newest:
        status = sorted(newest.values())
        await conn.execute(
            STATUS_ROWS,
            [r[0] for r in status], [r[1] for r in status], [r[2] for r in status],
            [r[3] for r in status], [r[5] for r in status], [r[4] for r in status],
            [r[6] for r in status],
        )  # fmt: skip
    minutes = sorted({_EPOCH + (u // 60_000_000) * 60_000_000 * _US for _, _, u, *_ in events})
    await conn.execute(RECORD_MINUTES, minutes)
    return True


async def upsert_batch(
    conn: asyncpg.Connection, events: Sequence[EventRow], readings: Sequence[ReadingRow]
) -> int:
    """The staged upsert: every guarantee, whatever the batch meets in the tables."""
    await conn.copy_records_to_table("stage_events", records=events, columns=EVENT_COLUMNS)
    await conn.copy_records_to_table("stage_readings", records=readings, columns=READING_COLUMNS)
    status: Any = await conn.execute(UPSERT_EVENTS)
    won = int(str(status).rsplit(" ", 1)[-1])
    await derive(conn, won, len(events))
    return won


async def derive(conn: asyncpg.Connection, won: int, staged: int) -> None:
    """Readings and status for the events that won, then drop what replaced rows lost."""
    if not won:
        return
    every = won == staged
    await conn.execute(UPSERT_READINGS_ALL if every else UPSERT_READINGS)
    await conn.execute(UPSERT_STATUS_ALL if every else UPSERT_STATUS)
    await conn.execute(DELETE_STALE_READINGS)
    await conn.execute(RECORD_TOUCHED)
