"""The batch upsert fed by unnest(arrays) instead of COPY: kept to measure the two
(scripts/bench_ingest.py)."""

from collections.abc import Sequence
from typing import Any

import asyncpg

from workers import writes
from workers.writes import EventRow, ReadingRow

UNNEST_EVENTS = writes.EVENTS_UPSERT.format(
    source=f"""SELECT t, d, {writes.TS_EXPR.format(col="u")}, i, s, m::jsonb, string_to_array(g, chr(31)), q
    FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::bigint[]) AS x(t, d, u, i, s, m, g, q)
    ORDER BY t, d, u"""
)

UNNEST_READINGS = """
INSERT INTO stage_readings (tenant_id, device_id, metric, ts_us, site_id, value, seq)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[],
                     $6::float8[], $7::bigint[])
"""


async def write_batch_unnest(
    conn: asyncpg.Connection, events: Sequence[EventRow], readings: Sequence[ReadingRow]
) -> int:
    """The same upsert fed by unnest(arrays) instead of COPY; kept to measure the two."""
    tags = [chr(31).join(row[6]) if row[6] else None for row in events]
    columns = [list(column) for column in zip(*events, strict=True)] if events else [[]] * 8
    columns[6] = tags
    status: Any = await conn.execute(UNNEST_EVENTS, *columns)
    won = int(str(status).rsplit(" ", 1)[-1])
    if won:
        reading_columns = (
            [list(column) for column in zip(*readings, strict=True)] if readings else [[]] * 7
        )
        await conn.execute(UNNEST_READINGS, *reading_columns)
    await writes.derive(conn, won, len(events))
    return won
