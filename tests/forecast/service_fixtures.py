"""The forecaster under test: its app with a shared warm training pool, the API beside it,
and history written through the real write path (API -> stream -> worker -> refresher).

Imported by tests/forecast/conftest.py and by the alert tests that need a forecaster.
"""

import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from app.core.settings import Settings
from app.main import create_app as create_api
from forecast.main import create_app as create_forecaster
from forecast.pool import TrainingPool
from tests.fixtures.worker import RunWorker
from tests.helpers import post_batch
from tests.reads.test_reads import refresh, reset_rollups

T0 = datetime(2025, 3, 3, tzinfo=UTC)  # a Monday, 00:00 UTC
QUARTER = timedelta(minutes=15)

Write = Callable[[Sequence[dict[str, Any]]], Awaitable[None]]


def readings(
    device: str,
    values: Sequence[float | None],
    *,
    start: datetime = T0,
    step: timedelta = QUARTER,
    metric: str = "power_w",
    site: str | None = "s1",
) -> list[dict[str, Any]]:
    """One event per step with the value (None: a hole, no event)."""
    out = []
    for index, value in enumerate(values):
        if value is None:
            continue
        moment = start + index * step
        event: dict[str, Any] = {
            "event_id": f"{device}-{metric}-{moment.isoformat()}",
            "device_id": device,
            "ts": moment.isoformat().replace("+00:00", "Z"),
            "metrics": {metric: value},
        }
        if site is not None:
            event["site_id"] = site
        out.append(event)
    return out


def daily(cells: int, *, per_day: int = 96, level: float = 1000.0, seed: int = 0) -> list[float]:
    """A meter's day: a two-harmonic load cycle plus a deterministic wiggle (no RNG state)."""
    values = []
    for i in range(cells):
        phase = 2 * math.pi * (i % per_day) / per_day
        wiggle = 15 * math.sin(7.3 * i + seed)
        values.append(level + 300 * math.sin(phase - 1.8) + 150 * math.sin(2 * phase) + wiggle)
    return values


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def forecast_settings(alert_settings: Settings) -> Settings:
    return alert_settings.model_copy(
        update={
            # The scheduled pass has its own test; elsewhere only trainings evaluate.
            "forecast_alert_interval_s": 3600.0,
            "refresh_max_minutes": 100_000,
            "forecast_alert_state_prefix": f"test:{uuid.uuid4().hex[:8]}:predicted",
        }
    )


@pytest.fixture(scope="session")
async def training_pool() -> AsyncIterator[TrainingPool]:
    """One warm spawn pool for the session: each process pays ~2-3 s to warm up."""
    pool = TrainingPool(1, "spawn", max_queued=8)
    pool.start()
    await pool.wait_warm()
    yield pool
    await pool.close()


@pytest.fixture
async def clean(db: asyncpg.Connection) -> asyncpg.Connection:
    await db.execute("TRUNCATE forecast_models")
    await reset_rollups(db)
    return db


@pytest.fixture
async def api_app(
    forecast_settings: Settings, redis: Redis, clean: asyncpg.Connection
) -> AsyncIterator[FastAPI]:
    application = create_api(forecast_settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def api(api_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=api_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        yield http


@pytest.fixture
async def forecaster_app(
    forecast_settings: Settings,
    training_pool: TrainingPool,
    redis: Redis,
    clean: asyncpg.Connection,
) -> AsyncIterator[FastAPI]:
    application = create_forecaster(forecast_settings, training=training_pool)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def forecaster(forecaster_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=forecaster_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://forecast") as http:
        yield http


@pytest.fixture
def write(api: httpx.AsyncClient, run_worker: RunWorker, forecast_settings: Settings) -> Write:
    """Post events through the API, store them with a burst worker, refresh the rollups."""

    async def run(events: Sequence[dict[str, Any]]) -> None:
        for first in range(0, len(events), 2000):
            await post_batch(api, list(events[first : first + 2000]))
        await run_worker()
        await refresh(forecast_settings)

    return run
