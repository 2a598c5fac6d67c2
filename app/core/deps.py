"""Annotated dependency aliases of the shared resources; each domain adds its own in its deps.

The providers are async on purpose: FastAPI runs plain functions in a thread pool, which
cost more than the whole ingest path.
"""

from typing import Annotated

from fastapi import Depends, Header, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.errors import InvalidInput
from app.core.settings import Settings


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


async def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


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
    return x_tenant_id


RedisDep = Annotated[Redis, Depends(_redis)]
EngineDep = Annotated[AsyncEngine, Depends(_engine)]
TenantDep = Annotated[str, Depends(_tenant)]
