"""The pipeline at a glance, for the dashboard: ingest rate, queue, consumers, dead letters,
rollup lag and workers.

Fleet-wide, not per tenant: the stream, its consumer group, the dead-letter stream, the
rollups and the workers are shared by every tenant, and the ingest rate counts every
tenant's accepted events. What is computed here is what /readyz and /metrics compute (the
backlog script, the workers' health keys, the refresher's state); no query of its own.
"""

import asyncio
import time
from typing import Any

import asyncpg
from redis.asyncio import Redis

from app.core.database import DATABASE_ERRORS
from app.core.settings import Settings
from app.core.shards import dead_letter_streams
from app.core.streams import Consumer
from app.core.timeparse import US, iso
from app.health.workers import live_workers
from app.ingest.backpressure import BacklogGate, ShardedBacklog
from app.ingest.rate import IngestRate
from app.reads.aggregates import rollup_state


async def dead_letter_entries(redis: Redis, settings: Settings) -> int:
    """Entries in every dead-letter stream (for /v1/pipeline and /metrics)."""
    return sum([int(await redis.xlen(name)) for name in dead_letter_streams(settings)])


async def _watermark_lag(pool: asyncpg.Pool) -> tuple[float | None, str]:
    """Seconds since the rollup watermark (None before the first round), and whether the
    database answered; the rest of the answer does not need it."""
    try:
        async with asyncio.timeout(2), pool.acquire() as conn:
            state = await rollup_state(conn)
    except DATABASE_ERRORS as error:
        return None, f"error: {error.__class__.__name__}"
    if state.watermark_us is None:
        return None, "ok"
    return round(max(0.0, time.time() - state.watermark_us / US), 3), "ok"


async def pipeline(
    settings: Settings,
    redis: Redis,
    pool: asyncpg.Pool,
    backlog_gate: BacklogGate | ShardedBacklog,
    rate: IngestRate,
) -> dict[str, Any]:
    """The answer of GET /v1/pipeline; Redis errors propagate (503). On Redis Cluster the
    queue figures are the shards' totals and each consumer is named with its shard."""
    backlog = await backlog_gate.current()
    consumers: list[Consumer] = []
    if isinstance(backlog_gate, ShardedBacklog):
        for gate in backlog_gate.gates:
            consumers += [
                Consumer(f"{c.name}/{gate.label}", c.pending, c.idle_ms)
                for c in await gate.stream.consumers()
            ]
    else:
        consumers = await backlog_gate.stream.consumers()
    dead_letters = await dead_letter_entries(redis, settings)
    workers = await live_workers(redis, settings.worker_health_prefix)
    per_second = await rate.per_second(settings.ingest_rate_window_s)
    lag, database = await _watermark_lag(pool)
    return {
        "as_of": iso(time.time_ns() // 1000 // 1000 * 1000),
        "ingest_rate_per_s": per_second,
        "ingest_rate_window_s": settings.ingest_rate_window_s,
        "stream": {
            "name": settings.stream,
            "length": backlog.length,
            "backlog": backlog.entries,
            "oldest_pending_age_s": round(backlog.oldest_age_s, 3),
        },
        "consumers": [
            {"name": c.name, "pending": c.pending, "idle_ms": c.idle_ms} for c in consumers
        ],
        "dead_letters": int(dead_letters),
        "rollup_watermark_lag_s": lag,
        "database": database,
        "workers": [{"name": name, "status": status} for name, status in workers.items()],
    }
