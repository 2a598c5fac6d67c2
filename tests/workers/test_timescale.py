"""The TimescaleDB path: the same migrations and write path on a real TimescaleDB.

Runs when TEST_TIMESCALE_URL names a PostgreSQL where the timescaledb extension can be
created (it must be preloaded); skips with the reason otherwise.
"""

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from app.core.settings import Settings, dsn
from tests.fixtures.worker import RunWorker
from tests.helpers import event, post_batch

pytestmark = pytest.mark.timescale


@pytest.fixture
async def ts_db(timescale_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn(timescale_url))
    await conn.execute("TRUNCATE events, readings, device_status")
    yield conn
    await conn.close()


async def test_migrations_make_hypertables_with_policies(ts_db: asyncpg.Connection) -> None:
    tables = {
        r["hypertable_name"]
        for r in await ts_db.fetch(
            "SELECT hypertable_name FROM timescaledb_information.hypertables"
        )
    }
    assert {"events", "readings"} <= tables
    jobs = {
        (r["proc_name"], r["hypertable_name"])
        for r in await ts_db.fetch(
            "SELECT proc_name, hypertable_name FROM timescaledb_information.jobs"
        )
    }
    for table in ("events", "readings"):
        assert ("policy_compression", table) in jobs
        assert ("policy_retention", table) in jobs


async def test_write_path_on_hypertables(
    ts_db: asyncpg.Connection,
    timescale_url: str,
    client: httpx.AsyncClient,
    redis: Redis,
    settings: Settings,
    run_worker: RunWorker,
) -> None:
    await post_batch(client, [event("a", minute=1, temp=1.0, hum=5.0), event("b", minute=2)])
    await run_worker(database_url=timescale_url)
    # A later version of the same key with fewer metrics replaces the first one whole.
    await post_batch(client, [event("a2", minute=1, temp=9.0)])
    await run_worker(database_url=timescale_url)
    rows = await ts_db.fetch("SELECT event_id FROM events ORDER BY ts")
    assert [r["event_id"] for r in rows] == ["a2", "b"]
    readings = await ts_db.fetch(
        "SELECT metric, value FROM readings WHERE ts = '2025-06-01T10:01:00Z' ORDER BY metric"
    )
    assert [(r["metric"], r["value"]) for r in readings] == [("temp", 9.0)]
