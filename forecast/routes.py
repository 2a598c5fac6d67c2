"""The forecaster's routes: train, predict, models, health and metrics."""

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from app.core.database import probe
from app.core.deps import PoolDep, ReadPoolDep, RedisDep, SettingsDep, TenantDep
from app.core.responses import errors, json_response
from forecast import schemas, service
from forecast.deps import PredictedAlertsDep, PredictorDep, TrainingDep
from forecast.params import parse_horizon, parse_step, target, training_window

router = APIRouter(tags=["forecast"], responses=errors(401, 403, 404, 422, 503))

SensorId = Annotated[str | None, Query(min_length=1, max_length=128, description="a device")]
DeviceId = Annotated[str | None, Query(min_length=1, max_length=128, description="= sensor_id")]
SiteId = Annotated[
    str | None, Query(min_length=1, max_length=128, description="the site's aggregate")
]
Metric = Annotated[
    str | None, Query(min_length=1, max_length=128, description="default FORECAST_METRIC")
]
Step = Annotated[str | None, Query(description="whole minutes: 1m, 15m, 1h", max_length=32)]


@router.post("/train", response_model=schemas.Training, responses=errors(404, 422, 429, 503))
async def train(
    settings: SettingsDep,
    pool: PoolDep,
    reads: ReadPoolDep,
    training: TrainingDep,
    alerts: PredictedAlertsDep,
    tenant: TenantDep,
    sensor_id: SensorId = None,
    device_id: DeviceId = None,
    site_id: SiteId = None,
    metric: Metric = None,
    from_: Annotated[
        str | None, Query(alias="from", description="epoch ms or ISO 8601; default 7 days back")
    ] = None,
    to: Annotated[str | None, Query(description="epoch ms or ISO 8601; default now")] = None,
    step: Step = None,
) -> Response:
    """Train a new model version on the window's rollups and store it."""
    chosen, field = target(
        tenant,
        metric or settings.forecast_metric,
        sensor_id=sensor_id,
        device_id=device_id,
        site_id=site_id,
    )
    step_s = parse_step(step) or settings.forecast_step_s
    lo, hi = training_window(from_, to, step_s, settings)
    answer = await service.train(
        pool, reads, training, alerts, settings, chosen, field, lo_us=lo, hi_us=hi, step_s=step_s
    )
    return json_response(answer, 201)


@router.get("/predict", response_model=schemas.Prediction, responses=errors(404, 409, 422, 503))
async def predict(
    settings: SettingsDep,
    pool: PoolDep,
    predictor: PredictorDep,
    tenant: TenantDep,
    sensor_id: SensorId = None,
    device_id: DeviceId = None,
    site_id: SiteId = None,
    metric: Metric = None,
    horizon: Annotated[
        str | None, Query(description="a duration: 60m, 2h; default 1h", max_length=32)
    ] = None,
    step: Step = None,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Response:
    """Forecast with 80 % and 95 % intervals from the newest (or a given) version."""
    chosen, field = target(
        tenant,
        metric or settings.forecast_metric,
        sensor_id=sensor_id,
        device_id=device_id,
        site_id=site_id,
    )
    step_s = parse_step(step)
    horizon_s = parse_horizon(horizon, settings)
    answer = await service.predict(
        pool,
        predictor,
        settings,
        chosen,
        field,
        step_s=step_s,
        horizon_s=horizon_s,
        version=version,
    )
    return json_response(answer)


@router.get("/models", response_model=schemas.Versions)
async def list_models(
    pool: PoolDep,
    tenant: TenantDep,
    sensor_id: SensorId = None,
    device_id: DeviceId = None,
    site_id: SiteId = None,
    metric: Annotated[
        str | None, Query(min_length=1, max_length=128, description="all if absent")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """A device's or site's model versions with their training records, newest first."""
    chosen, _ = target(
        tenant, metric or "", sensor_id=sensor_id, device_id=device_id, site_id=site_id
    )
    answer = await service.versions(pool, chosen, any_metric=metric is None, limit=limit)
    return json_response(answer)


@router.get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """Answer 200 while the process serves."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    tags=["health"],
    response_model=schemas.Readiness,
    responses={503: {"model": schemas.Readiness, "description": "not ready; see checks"}},
)
async def readyz(
    pool: PoolDep,
    reads: ReadPoolDep,
    redis: RedisDep,
    training: TrainingDep,
    predictor: PredictorDep,
) -> Response:
    """Answer 200 when the database answers and the models are warm; Redis is reported."""
    checks: dict[str, Any] = {}
    checks["database"] = await probe(pool)
    # Reported, not judged: history reads fall back to the primary.
    checks["read_replica"] = reads.status()
    try:
        async with asyncio.timeout(2):
            await redis.ping()
        checks["redis"] = "ok"
    except (RedisError, OSError, TimeoutError) as error:
        # Only predicted-breach alerts need Redis; training and predicting do not.
        checks["redis"] = f"error: {error.__class__.__name__}"
    checks["training_pool"] = _warmth(training.warm_up_error, training.warm_up_s)
    checks["predict"] = _warmth(predictor.warm_up_error, predictor.warm_up_s)
    ready = checks["database"] == "ok" and training.warm and predictor.warm
    return json_response(
        {"status": "ready" if ready else "not ready", "checks": checks}, 200 if ready else 503
    )


def _warmth(error: str | None, seconds: float | list[float] | None) -> dict[str, Any] | str:
    if error is not None:
        return f"error: {error}"
    if seconds is None:
        return "warming"
    rounded = [round(s, 3) for s in seconds] if isinstance(seconds, list) else round(seconds, 3)
    return {"status": "warm", "warm_up_s": rounded}


@router.get("/metrics", tags=["health"], response_class=Response)
async def metrics() -> Response:
    """Prometheus metrics of this forecaster process."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
