"""What the end-to-end benchmark asks the database: probe rows (ingest-to-queryable), the
server processes serving each component (CPU per component), and a raw COPY of the same
rows into the same tables (the ceiling the pipeline is compared with)."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

TRUNCATE_STORAGE = "TRUNCATE events, readings, device_status"

PROBES_SEEN = """
SELECT (extract(epoch FROM ts) * 1000)::bigint AS ts_ms
FROM events
WHERE tenant_id = $1 AND device_id = $2 AND ts > to_timestamp($3 / 1000.0)
"""

BACKENDS = """
SELECT pid, application_name FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend'
"""

EventCopyRow = tuple[str, str, datetime, str, str | None, str, list[str], int]
ReadingCopyRow = tuple[str, str, str, datetime, str | None, float, int]


async def probes_seen(
    conn: asyncpg.Connection, tenant: str, device: str, after_ms: int
) -> list[int]:
    """The timestamps (epoch ms) of the probe device's rows newer than `after_ms`."""
    rows = await conn.fetch(PROBES_SEEN, tenant, device, after_ms)
    return [int(row["ts_ms"]) for row in rows]


async def backends(conn: asyncpg.Connection) -> list[tuple[int, str]]:
    """Server process id and application name of every client of this database."""
    rows: list[Any] = await conn.fetch(BACKENDS)
    return [(int(row["pid"]), str(row["application_name"])) for row in rows]


async def truncate_storage(conn: asyncpg.Connection) -> None:
    await conn.execute(TRUNCATE_STORAGE)


async def copy_events(conn: asyncpg.Connection, rows: Sequence[EventCopyRow]) -> None:
    await conn.copy_records_to_table(
        "events",
        records=rows,
        columns=("tenant_id", "device_id", "ts", "event_id", "site_id", "metrics", "tags", "seq"),
    )


async def copy_readings(conn: asyncpg.Connection, rows: Sequence[ReadingCopyRow]) -> None:
    await conn.copy_records_to_table(
        "readings",
        records=rows,
        columns=("tenant_id", "device_id", "metric", "ts", "site_id", "value", "seq"),
    )
