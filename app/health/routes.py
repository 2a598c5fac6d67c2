"""Liveness, readiness and Prometheus metrics."""

import asyncio
from contextlib import suppress
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from redis.exceptions import RedisError

from app.core.deps import PoolDep, RedisDep
from app.core.responses import json_response
from app.ingest.deps import GateDep

router = APIRouter(tags=["health"])


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, Any]


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Answer 200 while the process serves."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "the database or Redis does not answer"}},
)
async def readyz(pool: PoolDep, redis: RedisDep, gate: GateDep) -> Response:
    """Answer 200 when the database and Redis answer; the backlog is reported, not judged."""
    checks: dict[str, Any] = {}
    try:
        async with asyncio.timeout(2):
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        checks["database"] = "ok"
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as error:
        checks["database"] = f"error: {error.__class__.__name__}"
    try:
        async with asyncio.timeout(2):
            await redis.ping()
            backlog = await gate.current()
        checks["redis"] = "ok"
        within = backlog.entries <= gate.max_entries and backlog.oldest_age_s <= gate.max_age_s
        checks["backlog"] = {
            "entries": backlog.entries,
            "oldest_age_s": round(backlog.oldest_age_s, 3),
            "status": "ok" if within else "over limit",
        }
    except (RedisError, OSError, TimeoutError) as error:
        checks["redis"] = f"error: {error.__class__.__name__}"
    # A backlog is what backpressure (429) is for: readiness is "can serve", so a burst does
    # not take every API replica out of a load balancer at once.
    ready = checks.get("database") == "ok" and checks.get("redis") == "ok"
    return json_response(
        {"status": "ready" if ready else "not ready", "checks": checks}, 200 if ready else 503
    )


@router.get("/metrics", response_class=Response)
async def metrics(gate: GateDep) -> Response:
    """Prometheus metrics of this API process."""
    with suppress(RedisError, OSError):
        await gate.current()  # refreshes the backlog gauges
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
