"""The API's PostgreSQL pool (asyncpg), made by a factory inside a lifespan, never at import.

asyncpg is the one way the services talk to the database: the workers' write path needs
its COPY and binary protocol anyway, and one driver means one set of types, errors and
pooling rules. SQLAlchemy stays for Alembic only.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from app.core.settings import Settings, dsn


async def create_pool(
    settings: Settings,
    *,
    application_name: str = "telemetry-api",
    max_size: int = 10,
    url: str | None = None,
    connect_timeout_s: float = 5,
) -> asyncpg.Pool:
    """A lazy pool: no connection is opened until a request needs one, so the API starts
    (and answers 503) while the database is still down. `url` defaults to DATABASE_URL (the
    read pool passes READ_DATABASE_URL)."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn(url or settings.database_url),
        min_size=0,
        max_size=max_size,
        timeout=connect_timeout_s,
        command_timeout=settings.statement_timeout_ms / 1000 or None,
        server_settings={
            "application_name": application_name,
            "statement_timeout": str(settings.statement_timeout_ms),
        },
    )
    return pool


# What a database that is down, restarting or unreachable raises through asyncpg.
DATABASE_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


async def probe(pool: asyncpg.Pool, timeout_s: float = 2.0) -> str:
    """For readiness: "ok" when the pool's database answers within the timeout, else
    "error: <class>"."""
    try:
        async with asyncio.timeout(timeout_s), pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
    except DATABASE_ERRORS as error:
        return f"error: {error.__class__.__name__}"
    return "ok"


async def close_pool(pool: asyncpg.Pool, timeout_s: float = 5.0) -> None:
    """Close gracefully, then terminate: a connection stuck behind a lock or a dead server
    must not hold a shutdown (or a test's teardown) forever."""
    try:
        await asyncio.wait_for(pool.close(), timeout=timeout_s)
    except TimeoutError:
        pool.terminate()


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """One connection in one transaction: committed when the block ends, rolled back when
    it raises. Query functions take the connection and never commit themselves."""
    async with pool.acquire() as conn, conn.transaction():
        yield conn
