"""Annotated dependency aliases of the shared resources; each domain adds its own in its deps.

The providers are async on purpose: FastAPI runs plain functions in a thread pool, which
cost more than the whole ingest path.
"""

from collections.abc import AsyncIterator
from typing import Annotated

import asyncpg
from fastapi import Depends, Header, Request
from redis.asyncio import Redis

from app.core.replica import ReadPool, Source
from app.core.settings import Settings
from app.core.tenancy import Identity, Tenants, asks_for_key


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


async def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


async def _connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    pool: asyncpg.Pool = request.app.state.pool
    async with pool.acquire() as conn:
        yield conn


async def _read_pool(request: Request) -> ReadPool:
    reads: ReadPool = request.app.state.read_pool
    return reads


async def _read_source(request: Request) -> Source:
    """Where this request's reads go (a retry after a replica failure: the primary)."""
    reads: ReadPool = request.app.state.read_pool
    return reads.choose(primary_only=getattr(request.state, "read_primary_only", False))


ReadSourceDep = Annotated[Source, Depends(_read_source)]


async def _read_connection(
    request: Request, source: ReadSourceDep
) -> AsyncIterator[asyncpg.Connection]:
    reads: ReadPool = request.app.state.read_pool
    async with reads.connection(source) as (conn, used):
        # ReplicaFallbackRoute runs the route again on the primary if this one fails it.
        request.state.read_on_replica = used.name == "replica"
        yield conn


SettingsDep = Annotated[Settings, Depends(_settings)]


async def _identity(
    request: Request,
    # Declared for the OpenAPI document; the app's Tenants reads the headers itself.
    x_api_key: Annotated[str | None, Header()] = None,
) -> Identity:
    tenants: Tenants = request.app.state.tenants
    return await tenants.identify(request.headers)


IdentityDep = Annotated[Identity, Depends(_identity)]


async def _optional_identity(
    request: Request,
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Identity | None:
    """The caller, or None when keys are asked for and none is sent (a public route that
    says more to a known caller); a key that is sent must be valid (401, 403)."""
    if asks_for_key(settings) and not x_api_key:
        return None
    tenants: Tenants = request.app.state.tenants
    return await tenants.identify(request.headers)


OptionalIdentityDep = Annotated[Identity | None, Depends(_optional_identity)]


async def _tenant(identity: IdentityDep) -> str:
    return identity.tenant


RedisDep = Annotated[Redis, Depends(_redis)]
PoolDep = Annotated[asyncpg.Pool, Depends(_pool)]
# Released when the route returns, before the response is sent.
ConnectionDep = Annotated[asyncpg.Connection, Depends(_connection, scope="function")]
TenantDep = Annotated[str, Depends(_tenant)]
# Reads that may go to the replica (READ_DATABASE_URL): the read API's routes and the
# forecaster's history. Writes stay on PoolDep / ConnectionDep.
ReadPoolDep = Annotated[ReadPool, Depends(_read_pool)]
ReadConnectionDep = Annotated[asyncpg.Connection, Depends(_read_connection, scope="function")]
