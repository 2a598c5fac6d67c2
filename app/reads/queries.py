"""Reads of stored events and of the device status table.

Listings are newest first. A device's events page by keyset on ts (its primary key is
(tenant, device, ts)); tag search pages by (ts, device); the tenant-wide listing pages by
offset, as seed 001 asks, up to a bound.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.params import to_datetime, to_us

_COLUMNS = "event_id, device_id, site_id, ts, metrics, tags"


@dataclass(frozen=True, slots=True)
class EventRow:
    event_id: str
    device_id: str
    site_id: str | None
    ts_us: int
    metrics: dict[str, float]
    tags: list[str]


def _event(row: Any) -> EventRow:
    metrics = row.metrics
    if isinstance(metrics, (str, bytes)):
        metrics = orjson.loads(metrics)
    return EventRow(
        row.event_id, row.device_id, row.site_id, to_us(row.ts), metrics, list(row.tags or ())
    )


async def _events(conn: AsyncConnection, query: str, params: dict[str, Any]) -> list[EventRow]:
    result = await conn.execute(text(query), params)
    return [_event(row) for row in result]


def _range(from_us: int, to_us_: int) -> dict[str, datetime]:
    return {"lo": to_datetime(from_us), "hi": to_datetime(to_us_)}


DEVICE_EVENTS = f"""
SELECT {_COLUMNS} FROM events
WHERE tenant_id = :tenant AND device_id = :device AND ts >= :lo AND ts < :hi
ORDER BY ts DESC
LIMIT :limit
"""


async def device_events(
    conn: AsyncConnection, tenant: str, device: str, from_us: int, to_us_: int, limit: int
) -> list[EventRow]:
    """A device's events in [from, to), newest first."""
    params = {"tenant": tenant, "device": device, **_range(from_us, to_us_), "limit": limit}
    return await _events(conn, DEVICE_EVENTS, params)


TENANT_EVENTS = f"""
SELECT {_COLUMNS} FROM events
WHERE tenant_id = :tenant
ORDER BY ts DESC, device_id DESC
LIMIT :limit OFFSET :offset
"""


async def tenant_events(
    conn: AsyncConnection, tenant: str, offset: int, limit: int
) -> list[EventRow]:
    """One page of the tenant's events, newest first."""
    return await _events(conn, TENANT_EVENTS, {"tenant": tenant, "limit": limit, "offset": offset})


SEARCH = f"""
SELECT {_COLUMNS} FROM events
WHERE tenant_id = :tenant AND tags @> CAST(:tags AS text[]) AND ts >= :lo AND ts < :hi
    AND (ts, device_id) < (:before_ts, :before_device)
ORDER BY ts DESC, device_id DESC
LIMIT :limit
"""


async def search_events(
    conn: AsyncConnection,
    tenant: str,
    tags: list[str],
    from_us: int,
    to_us_: int,
    before: tuple[int, str],
    limit: int,
) -> list[EventRow]:
    """Events carrying every tag, newest first, strictly before the (ts, device) position."""
    params = {"tenant": tenant, "tags": tags, **_range(from_us, to_us_), "limit": limit}
    params.update(before_ts=to_datetime(before[0]), before_device=before[1])
    return await _events(conn, SEARCH, params)


@dataclass(frozen=True, slots=True)
class StatusRow:
    metric: str
    value: float
    ts_us: int
    site_id: str | None
    updated_at_us: int


DEVICE_STATUS = """
SELECT metric, value, ts, site_id, updated_at FROM device_status
WHERE tenant_id = :tenant AND device_id = :device
ORDER BY metric
"""


async def device_status(conn: AsyncConnection, tenant: str, device: str) -> list[StatusRow]:
    """The latest value of each metric the device has sent."""
    result = await conn.execute(text(DEVICE_STATUS), {"tenant": tenant, "device": device})
    return [
        StatusRow(r.metric, r.value, to_us(r.ts), r.site_id, to_us(r.updated_at)) for r in result
    ]
