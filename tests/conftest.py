"""Tests run against the real PostgreSQL and Redis: a migrated test database, Redis db 15."""

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import psycopg
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from app.core.settings import Settings, dsn
from app.main import create_app
from scripts.schema import recreate
from workers.consumer import Worker
from workers.database import Database

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLES = (
    "events",
    "readings",
    "device_status",
    "alert_rules",
    "alert_rule_versions",
    "alert_history",
)


def _test_database_url() -> str:
    if "TEST_DATABASE_URL" in os.environ:
        return os.environ["TEST_DATABASE_URL"]
    base = make_url(dsn(os.environ.get("DATABASE_URL", Settings().database_url)))
    return base.set(database="telemetry_test").render_as_string(hide_password=False)


def _test_redis_url() -> str:
    if "TEST_REDIS_URL" in os.environ:
        return os.environ["TEST_REDIS_URL"]
    base = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    return base.rsplit("/", 1)[0] + "/15"


def migrate(url: str) -> None:
    """Drop and recreate the database, then run every migration on it."""
    recreate(url)


@pytest.fixture(scope="session")
def database_url() -> str:
    url = _test_database_url()
    migrate(url)
    return url


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=_test_redis_url(),
        block_ms=50,
        claim_interval_s=0.01,
        trim_interval_s=3600,
        db_retry_base_s=0.01,
        db_retry_max_s=0.1,
        backlog_check_interval_s=0,
    )


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the test database, with the tables emptied first."""
    conn = await asyncpg.connect(dsn(settings.database_url))
    await conn.execute(f"TRUNCATE {', '.join(TABLES)}")
    yield conn
    await conn.close()


@pytest.fixture
async def app(settings: Settings, redis: Redis, db: asyncpg.Connection) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


TIMESCALE_URL = os.environ.get("TEST_TIMESCALE_URL", "")


def timescale_skip_reason() -> str | None:
    """Why the TimescaleDB tests cannot run here, or None when they can."""
    if not TIMESCALE_URL:
        return "TEST_TIMESCALE_URL is not set (point it at a PostgreSQL with TimescaleDB)"
    admin = make_url(dsn(TIMESCALE_URL)).set(database="postgres")
    try:
        with psycopg.connect(
            admin.render_as_string(hide_password=False), connect_timeout=3
        ) as conn:
            preload = conn.execute("SHOW shared_preload_libraries").fetchone()
            available = conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
            ).fetchone()
    except psycopg.OperationalError as error:
        return f"TEST_TIMESCALE_URL does not answer: {error}"
    if not available or not preload or "timescaledb" not in preload[0]:
        return "the timescaledb extension is not installed and preloaded there"
    return None


@pytest.fixture(scope="session")
def timescale_url() -> str:
    """A migrated TimescaleDB database, or the test skips with the reason."""
    reason = timescale_skip_reason()
    if reason:
        pytest.skip(reason)
    migrate(TIMESCALE_URL)
    return TIMESCALE_URL


@pytest.fixture
def alert_settings(settings: Settings) -> Settings:
    # Pub/Sub channels are global across Redis dbs: unique names keep test runs apart.
    tag = uuid.uuid4().hex[:8]
    return settings.model_copy(
        update={
            "alert_rules_channel": f"test:{tag}:rules",
            "alert_channel": f"test:{tag}:alerts",
            "alert_rule_sync_s": 3600.0,
            # Batches go to Redis in several script calls, as large ones do.
            "alert_eval_chunk": 3,
            "alert_sse_heartbeat_s": 0.2,
        }
    )


RunWorker = Callable[..., Awaitable[Worker]]


@pytest.fixture
def run_worker(settings: Settings, redis: Redis) -> RunWorker:
    """Run one worker in burst mode until the stream is drained."""

    async def run(name: str = "w1", database: Database | None = None, **overrides: Any) -> Worker:
        worker_settings = settings.model_copy(update=overrides)
        database = database or Database(worker_settings)
        worker = Worker(worker_settings, redis, database, name=name, burst=True)
        try:
            await worker.run()
        finally:
            await database.close()
        return worker

    return run
