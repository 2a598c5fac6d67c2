"""Annotated dependency aliases of the shared resources; each domain adds its own in its deps.

The providers are async on purpose: FastAPI runs plain functions in a thread pool, which
cost more than the whole ingest path.
"""

from collections.abc import AsyncIterator
from typing import Annotated

import asyncpg
from fastapi import Depends, Header, Request
from redis.asyncio import Redis

from app.core.errors import InvalidInput
from app.core.params import check_param
from app.core.settings import Settings


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


SettingsDep = Annotated[Settings, Depends(_settings)]


async def _tenant(
    settings: SettingsDep,
    x_tenant_id: Annotated[str | None, Header(max_length=128)] = None,
) -> str:
    # Per-tenant API keys will replace this header; everything below already keys on it.
    if x_tenant_id is None:
        return settings.default_tenant
    if not x_tenant_id:
        raise InvalidInput("must not be empty", field="X-Tenant-ID")
    return check_param(x_tenant_id, "X-Tenant-ID")


RedisDep = Annotated[Redis, Depends(_redis)]
PoolDep = Annotated[asyncpg.Pool, Depends(_pool)]
# Released when the route returns, before the response is sent.
ConnectionDep = Annotated[asyncpg.Connection, Depends(_connection, scope="function")]
TenantDep = Annotated[str, Depends(_tenant)]
