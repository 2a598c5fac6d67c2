"""The naive baseline: a first version of seed 004, for the benchmark to compare against.

    uvicorn scripts.baseline:app --port 8100

A minimal FastAPI service that writes each event to PostgreSQL in its own transaction
(one INSERT, one COMMIT) before it answers, through a SQLAlchemy async engine as seed 004
does. No queue, no batching; the batch route loops over the events. It answers seed 004's
`{"event_id": ..., "status": "stored" | "duplicate"}`.
"""

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.core.settings import get_settings
from scripts.sql.baseline import create_table, insert_event

KNOWN = {"event_id", "device_id", "sensor_id", "deviceId", "ts", "timeStamp", "timestamp"}
KNOWN |= {"site_id", "tenant_id", "metrics", "tags"}


def _ts(value: Any) -> datetime:
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value / 1000, UTC)
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _event(raw: dict[str, Any], tenant: str) -> dict[str, Any]:
    metrics = dict(raw.get("metrics") or {})
    for key, value in raw.items():
        if key not in KNOWN and isinstance(value, (int, float)) and math.isfinite(value):
            metrics[key] = value
    return {
        "event_id": str(raw["event_id"]),
        "tenant_id": tenant,
        "device_id": str(raw.get("device_id") or raw.get("sensor_id") or raw.get("deviceId")),
        "ts": _ts(raw.get("ts") or raw.get("timeStamp") or raw.get("timestamp")),
        "site_id": raw.get("site_id"),
        "metrics": metrics,
        "tags": list(raw.get("tags") or []),
    }


def create_baseline() -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = get_settings()
        app.state.engine = create_async_engine(
            settings.async_database_url,
            pool_size=10,
            max_overflow=10,
            connect_args={"server_settings": {"application_name": "baseline"}},
        )
        async with app.state.engine.begin() as conn:
            await create_table(conn)
        try:
            yield
        finally:
            await app.state.engine.dispose()

    app = FastAPI(title="Naive baseline", lifespan=lifespan)

    async def store(engine: AsyncEngine, raw: dict[str, Any], tenant: str) -> dict[str, str]:
        event = _event(raw, tenant)
        async with engine.begin() as conn:
            stored = await insert_event(conn, **event)
        return {"event_id": event["event_id"], "status": "stored" if stored else "duplicate"}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Answer 200 while the process serves."""
        return {"status": "ok"}

    @app.post("/v1/events")
    async def one(request: Request) -> Response:
        """Store one event in its own transaction."""
        tenant = request.headers.get("x-tenant-id", "default")
        answer = await store(request.app.state.engine, orjson.loads(await request.body()), tenant)
        return Response(orjson.dumps(answer), media_type="application/json")

    @app.post("/v1/events/batch")
    async def batch(request: Request) -> Response:
        """Store each event of a JSON array in its own transaction, one after the other."""
        tenant = request.headers.get("x-tenant-id", "default")
        engine = request.app.state.engine
        answers = [await store(engine, raw, tenant) for raw in orjson.loads(await request.body())]
        return Response(orjson.dumps(answers), media_type="application/json")

    return app


app = create_baseline()
