"""What the checker reads back: one run's stored events, per-minute aggregates computed
straight from `readings`, and the current status rows, all scoped to given devices.
"""

from collections.abc import AsyncIterator, Sequence

import asyncpg

# Epoch milliseconds and minute numbers computed in SQL, so the checker compares integers
# with the ground truth and never depends on the session time zone.
EVENTS = """
SELECT device_id, (extract(epoch FROM ts) * 1000)::bigint AS ts_ms, event_id, site_id,
       metrics::text AS metrics, tags
FROM events
WHERE tenant_id = $1 AND device_id = ANY($2::text[])
"""

COUNT_EVENTS = """
SELECT count(*) FROM events WHERE tenant_id = $1 AND device_id = ANY($2::text[])
"""

MINUTE_AGGREGATES = """
SELECT device_id, metric, floor(extract(epoch FROM ts) / 60)::bigint AS minute,
       count(*) AS count, sum(value) AS sum, min(value) AS min, max(value) AS max
FROM readings
WHERE tenant_id = $1 AND device_id = ANY($2::text[])
GROUP BY device_id, metric, minute
"""

STATUS = """
SELECT device_id, metric, (extract(epoch FROM ts) * 1000)::bigint AS ts_ms, value
FROM device_status
WHERE tenant_id = $1 AND device_id = ANY($2::text[])
"""


async def stored_events(
    conn: asyncpg.Connection, tenant: str, devices: Sequence[str], chunk: int = 10_000
) -> AsyncIterator[asyncpg.Record]:
    """The run's events rows, streamed through a cursor (a run can hold millions)."""
    async with conn.transaction(readonly=True):
        async for row in conn.cursor(EVENTS, tenant, list(devices), prefetch=chunk):
            yield row


async def count_events(conn: asyncpg.Connection, tenant: str, devices: Sequence[str]) -> int:
    count: int = await conn.fetchval(COUNT_EVENTS, tenant, list(devices))
    return count


async def minute_aggregates(
    conn: asyncpg.Connection, tenant: str, devices: Sequence[str]
) -> list[asyncpg.Record]:
    """count, sum, min and max per device, metric and minute, from the readings table."""
    rows: list[asyncpg.Record] = await conn.fetch(MINUTE_AGGREGATES, tenant, list(devices))
    return rows


async def status_rows(
    conn: asyncpg.Connection, tenant: str, devices: Sequence[str]
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(STATUS, tenant, list(devices))
    return rows
