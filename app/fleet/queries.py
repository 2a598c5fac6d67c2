"""The tenant's devices, sites and metric names, from the hot device_status table.

One row per (tenant, device, metric) holds the latest value; a device's site is the one of
its newest reading. Searches are case-insensitive substrings (ASCII case: the ids collate
"C"), with LIKE's wildcards taken literally.
"""

from dataclasses import dataclass

import asyncpg

from app.core.timeparse import to_us


def contains(text: str | None) -> str | None:
    """An ILIKE pattern matching `text` anywhere, its `%`, `_` and `\\` literal."""
    if not text:
        return None
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True, slots=True)
class DeviceRow:
    device_id: str
    site_id: str | None
    last_ts_us: int
    metrics: dict[str, float]


DEVICES = r"""
SELECT device_id,
    (array_agg(site_id ORDER BY ts DESC))[1] AS site_id,
    max(ts) AS last_ts,
    array_agg(metric ORDER BY metric) AS names,
    array_agg(value ORDER BY metric) AS vals
FROM device_status
WHERE tenant_id = $1 AND ($2::text IS NULL OR device_id ILIKE $2 ESCAPE '\')
GROUP BY device_id
ORDER BY device_id
LIMIT $3
"""


async def devices(
    conn: asyncpg.Connection, tenant: str, pattern: str | None, limit: int
) -> list[DeviceRow]:
    """The tenant's devices matching the pattern, by id, with their latest values."""
    rows = await conn.fetch(DEVICES, tenant, pattern, limit)
    # Values as float8 arrays, not jsonb: jsonb's numeric would write 1e100 out in digits.
    return [
        DeviceRow(r["device_id"], r["site_id"], to_us(r["last_ts"]),
                  dict(zip(r["names"], r["vals"], strict=True)))
        for r in rows
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class SiteRow:
    site_id: str
    devices: int


SITES = r"""
WITH latest AS (
    SELECT DISTINCT ON (device_id) device_id, site_id
    FROM device_status
    WHERE tenant_id = $1
    ORDER BY device_id, ts DESC
)
SELECT site_id, count(*) AS devices
FROM latest
WHERE site_id IS NOT NULL AND ($2::text IS NULL OR site_id ILIKE $2 ESCAPE '\')
GROUP BY site_id
ORDER BY site_id
LIMIT $3
"""


async def sites(
    conn: asyncpg.Connection, tenant: str, pattern: str | None, limit: int
) -> list[SiteRow]:
    """The tenant's sites matching the pattern, by id, each with the devices whose newest
    reading names it."""
    rows = await conn.fetch(SITES, tenant, pattern, limit)
    return [SiteRow(row["site_id"], row["devices"]) for row in rows]


METRICS = """
SELECT DISTINCT metric FROM device_status WHERE tenant_id = $1 ORDER BY metric LIMIT $2
"""


async def metric_names(conn: asyncpg.Connection, tenant: str, limit: int) -> list[str]:
    """The metric names the tenant's devices have sent, at most `limit` of them."""
    return [row["metric"] for row in await conn.fetch(METRICS, tenant, limit)]
