"""The naive baseline's one table and its one statement (scripts/baseline.py): an event per
row, keyed by event id, written one transaction per event."""

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

CREATE = """
CREATE TABLE IF NOT EXISTS baseline_events (
    event_id  text PRIMARY KEY,
    tenant_id text NOT NULL,
    device_id text NOT NULL,
    ts        timestamptz NOT NULL,
    site_id   text,
    metrics   jsonb NOT NULL,
    tags      text[] NOT NULL DEFAULT '{}'
)
"""

INSERT = """
INSERT INTO baseline_events (event_id, tenant_id, device_id, ts, site_id, metrics, tags)
VALUES (:event_id, :tenant_id, :device_id, :ts, :site_id, CAST(:metrics AS jsonb), :tags)
ON CONFLICT (event_id) DO NOTHING
"""


async def create_table(conn: AsyncConnection) -> None:
    await conn.execute(text(CREATE))


async def insert_event(
    conn: AsyncConnection,
    *,
    event_id: str,
    tenant_id: str,
    device_id: str,
    ts: datetime,
    site_id: str | None,
    metrics: dict[str, Any],
    tags: list[str],
) -> bool:
    """True when stored, False when the event id was already there."""
    result = await conn.execute(
        text(INSERT),
        {
            "event_id": event_id,
            "tenant_id": tenant_id,
            "device_id": device_id,
            "ts": ts,
            "site_id": site_id,
            "metrics": orjson.dumps(metrics).decode(),
            "tags": tags,
        },
    )
    return bool(result.rowcount)


async def count_events(conn: AsyncConnection) -> int:
    return int((await conn.execute(text("SELECT count(*) FROM baseline_events"))).scalar_one())


async def truncate(conn: AsyncConnection) -> None:
    await conn.execute(text("TRUNCATE baseline_events"))
