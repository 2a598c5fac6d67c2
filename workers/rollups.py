"""Keeping the rollups current: the refresher's SQL (workers/refresher.py runs the rounds).

Workers append the minutes each batch changed to ``rollup_dirty`` in the batch's own
transaction. Plain PostgreSQL: the refresher recomputes those minutes from raw rows into
the ``*_mat`` tables, the hours and days above them from the finer tables, and moves the
watermark the views read. TimescaleDB: it calls refresh_continuous_aggregate on windows
around the same buckets, finer levels first (a hierarchical aggregate reads its parent's
materialised rows).
"""

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

import asyncpg

# One refresher at a time, fleet-wide: a session advisory lock, released with the session.
LOCK_KEY = 0x7E1E_0003

IS_PLAIN = "SELECT to_regclass('readings_1m_mat') IS NOT NULL"


async def is_plain(conn: asyncpg.Connection) -> bool:
    """True when the rollups are worker-maintained tables (no TimescaleDB)."""
    return bool(await conn.fetchval(IS_PLAIN))


async def tune(conn: asyncpg.Connection) -> None:
    """Session settings for the rebuilds: JIT compiling them costs more than it saves."""
    await conn.execute("SET jit = off; SET work_mem = '64MB'; SET TIME ZONE 'UTC'")


async def try_lead(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY))


async def resign(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


DIRTY_MINUTES = """
SELECT DISTINCT minute FROM rollup_dirty WHERE minute < $1 ORDER BY minute LIMIT $2
"""


async def dirty_minutes(
    conn: asyncpg.Connection, before: datetime, limit: int
) -> tuple[list[datetime], datetime | None]:
    """The oldest `limit` changed minutes before `before`, and the next one if more wait."""
    rows = await conn.fetch(DIRTY_MINUTES, before, limit + 1)
    minutes = [r["minute"] for r in rows]
    following = minutes[limit] if len(minutes) > limit else None
    return minutes[:limit], following


async def dirty_ids(conn: asyncpg.Connection, minutes: Sequence[datetime]) -> list[int]:
    rows = await conn.fetch("SELECT id FROM rollup_dirty WHERE minute = ANY($1)", minutes)
    return [r["id"] for r in rows]


async def forget_ids(conn: asyncpg.Connection, ids: Sequence[int]) -> None:
    await conn.execute("DELETE FROM rollup_dirty WHERE id = ANY($1)", ids)


async def forget_minutes(conn: asyncpg.Connection, minutes: Sequence[datetime]) -> None:
    """Inside the rebuild's transaction: rows committed later stay for the next round."""
    await conn.execute("DELETE FROM rollup_dirty WHERE minute = ANY($1)", minutes)


async def watermark(conn: asyncpg.Connection) -> datetime | None:
    value: datetime | None = await conn.fetchval("SELECT w1m FROM rollup_state")
    return value


FINISH = """
UPDATE rollup_state SET w1m = $1, refreshed_at = now(),
    pending_since = (SELECT min(recorded_at) FROM rollup_dirty WHERE minute < $1)
"""

LOG = """
INSERT INTO rollup_refresh_log (lo, hi) SELECT * FROM unnest($1::timestamptz[], $2::timestamptz[])
"""

PRUNE = """
DELETE FROM rollup_refresh_log WHERE refreshed_at < now() - make_interval(secs => $1)
"""


async def finish_round(
    conn: asyncpg.Connection,
    new_watermark: datetime | None,
    late: Sequence[tuple[datetime, datetime]],
    keep_log_s: float,
) -> None:
    """Move the watermark, log the late ranges for API caches, prune the old log."""
    await conn.execute(FINISH, new_watermark)
    if late:
        await conn.execute(LOG, [lo for lo, _ in late], [hi for _, hi in late])
    await conn.execute(PRUNE, keep_log_s)


# Plain PostgreSQL. Each statement rebuilds whole buckets: delete, then aggregate again
# from the finer level (raw rows for the minutes). The expressions match the continuous
# aggregates of migration 0002, so both paths give the same answers. Rows go in sorted by
# key, so the key index takes them as runs instead of scattered inserts.
_ROLL = "sum(value_count)::bigint, sum(value_sum), min(value_min), max(value_max), sum(energy)"

INSERT_MINUTES = """
INSERT INTO readings_1m_mat (minute, tenant_id, device_id, metric, site_id,
    value_count, value_sum, value_min, value_max, energy)
SELECT m.minute, r.tenant_id, r.device_id, r.metric, r.site_id,
    count(*), sum(r.value), min(r.value), max(r.value), greatest(sum(r.value) / count(*), 0) / 60
FROM unnest($1::timestamptz[]) AS m(minute)
JOIN readings r ON r.ts >= m.minute AND r.ts < m.minute + interval '1 minute'
WHERE NOT EXISTS (
    SELECT 1 FROM rollup_quarantine q
    WHERE q.minute = m.minute AND q.tenant_id = r.tenant_id AND q.device_id = r.device_id
        AND q.metric = r.metric
)
GROUP BY m.minute, r.tenant_id, r.device_id, r.metric, r.site_id
ORDER BY r.tenant_id, r.device_id, r.metric, m.minute
"""

INSERT_SITE_MINUTES = f"""
INSERT INTO site_readings_1m_mat (minute, tenant_id, site_id, metric,
    value_count, value_sum, value_min, value_max, energy, peak, minutes)
SELECT minute, tenant_id, site_id, metric, {_ROLL}, sum(energy) * 60, 1
FROM readings_1m_mat
WHERE minute = ANY($1) AND site_id IS NOT NULL
GROUP BY minute, tenant_id, site_id, metric
ORDER BY tenant_id, site_id, metric, minute
"""


def _insert_coarse(relation: str, column: str, source: str, source_column: str) -> str:
    site = relation.startswith("site_")
    key = "site_id" if site else "device_id"
    extra_columns = ", peak, minutes" if site else ""
    extra = ", max(s.peak), sum(s.minutes)::bigint" if site else ""
    width = {"hour": "1 hour", "day": "24 hours"}[column]
    return f"""
INSERT INTO {relation}_mat ({column}, tenant_id, {key}, metric,
    value_count, value_sum, value_min, value_max, energy{extra_columns})
SELECT b.{column}, s.tenant_id, s.{key}, s.metric,
    sum(s.value_count)::bigint, sum(s.value_sum), min(s.value_min), max(s.value_max),
    sum(s.energy){extra}
FROM unnest($1::timestamptz[]) AS b({column})
JOIN {source}_mat s ON s.{source_column} >= b.{column}
    AND s.{source_column} < b.{column} + interval '{width}'
GROUP BY b.{column}, s.tenant_id, s.{key}, s.metric
ORDER BY s.tenant_id, s.{key}, s.metric, b.{column}
"""


COARSE = (
    ("readings_1h", "hour", "readings_1m", "minute"),
    ("site_readings_1h", "hour", "site_readings_1m", "minute"),
    ("readings_1d", "day", "readings_1h", "hour"),
    ("site_readings_1d", "day", "site_readings_1h", "hour"),
)
INSERT_COARSE = {relation: _insert_coarse(*spec) for spec in COARSE for relation in [spec[0]]}


async def rebuild_minutes(conn: asyncpg.Connection, minutes: Sequence[datetime]) -> None:
    """Recompute the given minutes of the plain 1-minute rollups (device, then site)."""
    if minutes:
        for relation in ("readings_1m", "site_readings_1m"):
            await conn.execute(f"DELETE FROM {relation}_mat WHERE minute = ANY($1)", minutes)
        await conn.execute(INSERT_MINUTES, minutes)
        await conn.execute(INSERT_SITE_MINUTES, minutes)


async def rebuild_coarse(
    conn: asyncpg.Connection, relation: str, column: str, buckets: Sequence[datetime]
) -> None:
    """Recompute the given hours or days of one plain rollup from the finer one."""
    if buckets:
        await conn.execute(f"DELETE FROM {relation}_mat WHERE {column} = ANY($1)", buckets)
        await conn.execute(INSERT_COARSE[relation], buckets)


async def refresh_aggregate(
    conn: asyncpg.Connection, relation: str, lo: datetime, hi: datetime
) -> None:
    """TimescaleDB: materialise [lo, hi) of one continuous aggregate (outside a transaction)."""
    await conn.execute(
        "CALL refresh_continuous_aggregate($1::regclass, $2::timestamptz, $3::timestamptz)",
        relation,
        lo,
        hi,
    )


# Isolation: a piece the database refuses to roll up (a value it cannot aggregate) must not
# stop the rounds. The refresher finds the failing (minute, series) with these, records
# it, and rebuilds the rest without it.
SERIES_IN_MINUTE = """
SELECT DISTINCT tenant_id, device_id, metric, site_id FROM readings
WHERE ts >= $1 AND ts < $1 + interval '1 minute'
"""

# The expressions of the 1-minute rollup (migration 0002), for one series.
PROBE_SERIES = """
SELECT count(*), sum(value), min(value), max(value), greatest(sum(value) / count(*), 0) / 60
FROM readings
WHERE tenant_id = $1 AND device_id = $2 AND metric = $3 AND ts >= $4
    AND ts < $4 + interval '1 minute'
"""

QUARANTINE = """
INSERT INTO rollup_quarantine (minute, tenant_id, device_id, site_id, metric, whole_bucket, error)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""


class Series(NamedTuple):
    """One rolled-up series."""

    tenant: str
    device: str
    metric: str
    site: str | None


async def series_in_minute(conn: asyncpg.Connection, minute: datetime) -> list[Series]:
    rows = await conn.fetch(SERIES_IN_MINUTE, minute)
    return [Series(r["tenant_id"], r["device_id"], r["metric"], r["site_id"]) for r in rows]


async def probe(conn: asyncpg.Connection, minute: datetime, series: Series) -> None:
    """Compute one series' minute as the rollup does; raises what the rollup would."""
    await conn.fetchrow(PROBE_SERIES, series.tenant, series.device, series.metric, minute)


async def quarantine(
    conn: asyncpg.Connection, minute: datetime, series: Series, *, whole_bucket: bool, error: str
) -> None:
    await conn.execute(
        QUARANTINE,
        minute,
        series.tenant,
        series.device,
        series.site,
        series.metric,
        whole_bucket,
        error,
    )


async def release(conn: asyncpg.Connection, minutes: Sequence[datetime]) -> None:
    """Forget the quarantine of minutes about to be rebuilt: new data may have fixed them."""
    await conn.execute("DELETE FROM rollup_quarantine WHERE minute = ANY($1)", minutes)
