"""Liveness, readiness, Prometheus metrics and the pipeline summary of the dashboard."""

import asyncio
from contextlib import suppress
from typing import Any, Literal

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from redis.exceptions import RedisError

from app.core.database import probe
from app.core.deps import PoolDep, ReadPoolDep, RedisDep, SettingsDep, TenantDep
from app.core.metrics import DEAD_LETTER_ENTRIES
from app.core.responses import errors, json_response
from app.health import schemas
from app.health.pipeline import dead_letter_entries
from app.health.pipeline import pipeline as pipeline_state
from app.health.workers import live_workers
from app.ingest.backpressure import ShardedBacklog
from app.ingest.deps import GateDep, RateDep

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
async def readyz(
    pool: PoolDep, reads: ReadPoolDep, redis: RedisDep, gate: GateDep, settings: SettingsDep
) -> Response:
    """Answer 200 when the database and Redis answer; the backlog and the read replica are
    reported, not judged (reads fall back to the primary)."""
    checks: dict[str, Any] = {}
    checks["database"] = await probe(pool)
    checks["read_replica"] = reads.status()
    try:
        async with asyncio.timeout(2):
            await redis.ping()
            backlog = await gate.backlog.current()
            durability = await gate.durability.current()
            refusal = await gate.durability.refusal()
        checks["redis"] = "ok"
        checks["queue"] = {
            "durability": durability.level,
            "detail": durability.reason,
            "status": "ok" if refusal is None else f"refusing ingest: {refusal}",
        }
        limits = gate.backlog
        within = backlog.entries <= limits.max_entries and backlog.oldest_age_s <= limits.max_age_s
        checks["backlog"] = {
            "entries": backlog.entries,
            "oldest_age_s": round(backlog.oldest_age_s, 3),
            "status": "ok" if within else "over limit",
        }
        if isinstance(limits, ShardedBacklog):
            # On Redis Cluster each shard has its bounds; the total is only a summary.
            each = await limits.shards()
            checks["backlog"]["status"] = (
                "ok" if not any(g.over(b) for g, b in zip(limits.gates, each, strict=True))
                else "over limit"
            )  # fmt: skip
            checks["backlog"]["shards"] = {
                str(gate.label): {
                    "entries": b.entries,
                    "oldest_age_s": round(b.oldest_age_s, 3),
                    "status": "over limit" if gate.over(b) else "ok",
                }
                for gate, b in zip(limits.gates, each, strict=True)
            }
        checks["workers"] = await live_workers(redis, settings.worker_health_prefix)
    except (RedisError, OSError, TimeoutError) as error:
        checks["redis"] = f"error: {error.__class__.__name__}"
    # A backlog is what backpressure (429) is for: readiness is "can serve", so a burst does
    # not take every API replica out of a load balancer at once.
    ready = checks.get("database") == "ok" and checks.get("redis") == "ok"
    # A queue that would lose what it accepts cannot serve ingest: not ready.
    ready = ready and checks["queue"]["status"] == "ok"
    return json_response(
        {"status": "ready" if ready else "not ready", "checks": checks}, 200 if ready else 503
    )


@router.get("/metrics", response_class=Response)
async def metrics(gate: GateDep, redis: RedisDep, settings: SettingsDep) -> Response:
    """Prometheus metrics of this API process."""
    with suppress(RedisError, OSError):
        await gate.backlog.current()  # refreshes the backlog gauges
        await gate.durability.current()
        DEAD_LETTER_ENTRIES.set(await dead_letter_entries(redis, settings))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/pipeline", response_model=schemas.Pipeline, responses=errors(401, 403, 503))
async def pipeline(
    settings: SettingsDep,
    redis: RedisDep,
    pool: PoolDep,
    gate: GateDep,
    rate: RateDep,
    tenant: TenantDep,
) -> Response:
    """Ingest rate, queue, consumers, dead letters, rollup lag and workers (fleet-wide)."""
    answer = await pipeline_state(settings, redis, pool, gate.backlog, rate)
    return json_response(answer)
