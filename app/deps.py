"""Annotated dependency aliases: routes name what they need, the lifespan provides it.

The providers are async on purpose: FastAPI runs plain functions in a thread pool, which
cost more than the whole ingest path.
"""

from typing import Annotated

from fastapi import Depends, Header, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from app.alert_stream import AlertStream
from app.backlog import BacklogGate
from app.errors import InvalidInput
from app.fanout import AlertFanout
from app.settings import Settings
from app.stream import EventStream


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


async def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


async def _stream(request: Request) -> EventStream:
    stream: EventStream = request.app.state.stream
    return stream


async def _gate(request: Request) -> BacklogGate:
    gate: BacklogGate = request.app.state.gate
    return gate


async def _fanout(request: Request) -> AlertFanout:
    fanout: AlertFanout = request.app.state.alert_fanout
    return fanout


async def _alert_stream(request: Request) -> AlertStream:
    alert_stream: AlertStream = request.app.state.alert_stream
    return alert_stream


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
StreamDep = Annotated[EventStream, Depends(_stream)]
GateDep = Annotated[BacklogGate, Depends(_gate)]
TenantDep = Annotated[str, Depends(_tenant)]
FanoutDep = Annotated[AlertFanout, Depends(_fanout)]
AlertStreamDep = Annotated[AlertStream, Depends(_alert_stream)]
