"""The forecaster on TimescaleDB (continuous aggregates) and on plain PostgreSQL (worker
rollups): the same events give the same training data, bit for bit, and the same model.

Runs when TEST_TIMESCALE_URL names a PostgreSQL with the timescaledb extension preloaded;
skips with the reason otherwise.
"""

from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from app.core.settings import Settings, dsn
from app.main import create_app as create_api
from forecast.main import create_app as create_forecaster
from forecast.pool import TrainingPool
from tests.fixtures.worker import RunWorker
from tests.forecast.service_fixtures import QUARTER, T0, daily, iso, readings
from tests.helpers import post_batch
from tests.reads.test_reads import refresh

pytestmark = pytest.mark.timescale

CELLS = 3 * 96


async def test_both_storage_paths_train_the_same_model(
    timescale_url: str,
    forecast_settings: Settings,
    training_pool: TrainingPool,
    redis: Redis,
    clean: asyncpg.Connection,
    run_worker: RunWorker,
) -> None:
    timescale = forecast_settings.model_copy(
        update={
            "database_url": timescale_url,
            "stream": "forecast-ts:events",
            "dead_letter_stream": "forecast-ts:dead",
            "dedupe_prefix": "forecast-ts:seen",
        }
    )
    # Other TimescaleDB tests of the session write elsewhere in time; versions start at 1.
    ts_conn = await asyncpg.connect(dsn(timescale_url))
    try:
        await ts_conn.execute("TRUNCATE forecast_models")
    finally:
        await ts_conn.close()
    window = f"from={iso(T0)}&to={iso(T0 + CELLS * QUARTER)}"
    results: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for name, path in (("plain", forecast_settings), ("timescale", timescale)):
        async with AsyncExitStack() as stack:
            api_app = create_api(path)
            await stack.enter_async_context(api_app.router.lifespan_context(api_app))
            forecaster_app = create_forecaster(path, training=training_pool)
            await stack.enter_async_context(forecaster_app.router.lifespan_context(forecaster_app))
            api = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=api_app), base_url="http://a")
            )
            forecaster = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=forecaster_app), base_url="http://f"
                )
            )
            await post_batch(api, readings("d1", daily(CELLS)))
            overrides = {
                key: getattr(path, key)
                for key in ("database_url", "stream", "dead_letter_stream", "dedupe_prefix")
            }
            await run_worker(name=f"w-{name}", **overrides)
            await refresh(path)
            trained = await forecaster.post(f"/train?sensor_id=d1&step=15m&{window}")
            assert trained.status_code == 201, trained.text
            predicted = await forecaster.get("/predict?sensor_id=d1&horizon=3h")
            assert predicted.status_code == 200, predicted.text
            results[name] = trained.json(), predicted.json()
    (plain, plain_points), (ts, ts_points) = results["plain"], results["timescale"]
    assert plain["fingerprint"] == ts["fingerprint"]
    assert plain["model"] == ts["model"] and plain["params"] == ts["params"]
    assert plain_points["points"] == ts_points["points"]
