"""Reads of stored events and of the device status table.

Listings are newest first. A device's events page by keyset on ts (its primary key is
(tenant, device, ts)); tag search pages by (ts, device); the tenant-wide listing pages by
offset, as seed 001 asks, up to a bound.
"""

from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from app.core.timeparse import to_datetime, to_us

_COLUMNS = "event_id, device_id, site_id, ts, metrics, tags"


@dataclass(frozen=True, slots=True)
class EventRow:
    event_id: str
    device_id: str
    site_id: str | None
    ts_us: int
    metrics: dict[str, float]
    tags: list[str]


def _event(row: asyncpg.Record) -> EventRow:
    metrics: Any = row["metrics"]
    if isinstance(metrics, (str, bytes)):
        metrics = orjson.loads(metrics)
    return EventRow(
        row["event_id"],
        row["device_id"],
        row["site_id"],
        to_us(row["ts"]),
        metrics,
        list(row["tags"] or ()),
    )


DEVICE_EVENTS = f"""
SELECT {_COLUMNS} FROM events
WHERE tenant_id = $1 AND device_id = $2 AND ts >= $3 AND ts < $4
ORDER BY ts DESC
LIMIT $5
"""


async def device_events(
    conn: asyncpg.Connection, tenant: str, device: str, from_us: int, to_us_: int, limit: int
) -> list[EventRow]:
    """A device's events in [from, to), newest first."""
    rows = await conn.fetch(
        DEVICE_EVENTS, tenant, device, to_datetime(from_us), to_datetime(to_us_), limit
    )
    return [_event(row) for row in rows]


TENANT_EVENTS = f"""
SELECT {_COLUMNS} FROM events
WHERE tenant_id = $1
ORDER BY ts DESC, device_id DESC
LIMIT $2 OFFSET $3
"""


async def tenant_events(
    conn: asyncpg.Connection, tenant: str, offset: int, limit: int
) -> list[EventRow]:
    """One page of the tenant's events, newest first."""
    return [_event(row) for row in await conn.fetch(TENANT_EVENTS, tenant, limit, offset)]


SEARCH = f"""
SELECT {_COLUMNS} FROM events
WHERE tenant_id = $1 AND tags @> $2::text[] AND ts >= $3 AND ts < $4
    AND (ts, device_id) < ($5, $6)
ORDER BY ts DESC, device_id DESC
LIMIT $7
"""


async def search_events(
    conn: asyncpg.Connection,
    tenant: str,
    tags: list[str],
    from_us: int,
    to_us_: int,
    before: tuple[int, str],
    limit: int,
) -> list[EventRow]:
    """Events carrying every tag, newest first, strictly before the (ts, device) position."""
    rows = await conn.fetch(
        SEARCH,
        tenant,
        tags,
        to_datetime(from_us),
        to_datetime(to_us_),
        to_datetime(before[0]),
        before[1],
        limit,
    )
    return [_event(row) for row in rows]


@dataclass(frozen=True, slots=True)
class StatusRow:
    metric: str
    value: float
    ts_us: int
    site_id: str | None
    updated_at_us: int


DEVICE_STATUS = """
SELECT metric, value, ts, site_id, updated_at FROM device_status
WHERE tenant_id = $1 AND device_id = $2
ORDER BY metric
"""


async def device_status(conn: asyncpg.Connection, tenant: str, device: str) -> list[StatusRow]:
    """The latest value of each metric the device has sent."""
    rows = await conn.fetch(DEVICE_STATUS, tenant, device)
    return [
        StatusRow(r["metric"], r["value"], to_us(r["ts"]), r["site_id"], to_us(r["updated_at"]))
        for r in rows
    ]
