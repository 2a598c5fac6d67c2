"""The forecaster: `uvicorn forecast.main:app --port 8001`.

Its own process, so statsforecast (and the seconds it costs to import) never loads in the
API. The lifespan owns the asyncpg pools (the primary's, and the replica's for history reads
when READ_DATABASE_URL is set), the Redis client, the training process pool (its
processes warmed up as they start), the in-process predictor (warmed in a thread) and the
scheduled predicted-breach pass.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.alerts.state import AlertStream
from app.auth.service import create_tenants
from app.core.database import close_pool, create_pool
from app.core.errors import install_handlers
from app.core.params import check_request_params
from app.core.redis import create_redis
from app.core.replica import create_read_pool
from app.core.settings import Settings, get_settings
from forecast import routes
from forecast.alerts import PredictedAlerts
from forecast.pool import TrainingPool
from forecast.predictor import Predictor


def cors_origins(settings: Settings) -> list[str]:
    return [
        origin.strip() for origin in settings.forecast_cors_origins.split(",") if origin.strip()
    ]


def create_app(
    settings: Settings | None = None, *, training: TrainingPool | None = None
) -> FastAPI:
    """The forecaster app; `training` lends it a started pool it will not close (tests)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.pool = await create_pool(settings, application_name="telemetry-forecast")
        # History reads go to the replica at READ_DATABASE_URL when set; the model store and
        # the rules stay on the primary.
        app.state.read_pool = await create_read_pool(
            settings, app.state.pool, application_name="telemetry-forecast"
        )
        app.state.read_pool.start()
        app.state.redis = create_redis(settings)
        # The API's own notion of the caller: the same keys, the same tenant.
        app.state.tenants = create_tenants(settings, app.state.pool)
        owned = training is None
        pool = training or TrainingPool(
            settings.forecast_workers,
            settings.forecast_mp_context,
            max_queued=settings.forecast_max_queued,
        )
        if owned:
            pool.start()
        app.state.training = pool
        app.state.predictor = Predictor()
        app.state.predictor.start()
        app.state.predicted_alerts = PredictedAlerts(
            settings,
            app.state.pool,
            AlertStream(
                app.state.redis,
                settings.alert_stream,
                settings.alert_channel,
                settings.alert_stream_maxlen,
                settings.alert_state_ttl_s,
            ),
            app.state.predictor,
        )
        stop = asyncio.Event()
        schedule = asyncio.create_task(
            app.state.predicted_alerts.run(stop), name="predicted-breach-pass"
        )
        try:
            yield
        finally:
            stop.set()
            await schedule
            await app.state.predictor.close()
            if owned:
                await close_pool(pool)
            await app.state.redis.aclose()
            await app.state.read_pool.close()
            await close_pool(app.state.pool)

    app = FastAPI(
        title="Telemetry forecaster",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(check_request_params)],
    )
    app.include_router(routes.router)
    # The dashboard's page comes from the API's origin and sends X-API-Key (and, until
    # keys replace it, X-Tenant-ID): a non-simple header, so the browser preflights.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=cors_origins(settings),
        allow_methods=["GET", "POST"],
        allow_headers=["X-API-Key", "X-Tenant-ID", "Content-Type"],
        max_age=600,
    )
    install_handlers(app, settings.retry_after_s)
    return app


app = create_app()
