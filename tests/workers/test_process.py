"""`python -m workers` as a process: it stores what arrives and exits cleanly on SIGTERM."""

import asyncio
import os
import signal
import sys

import asyncpg
import httpx
from redis.asyncio import Redis

from app.core.settings import Settings
from tests.helpers import event, post_batch, wait_for


async def test_worker_process_drains_and_stops_on_sigterm(
    client: httpx.AsyncClient, db: asyncpg.Connection, redis: Redis, settings: Settings
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "BLOCK_MS": "100",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers", "--name", "proc", env=env
    )
    try:
        await post_batch(client, [event(f"e{i}", minute=i) for i in range(10)])

        async def stored() -> bool:
            count: int = await db.fetchval("SELECT count(*) FROM events")
            return count == 10

        await wait_for(stored)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert (await redis.xpending("telemetry:events", "ingest"))["pending"] == 0
