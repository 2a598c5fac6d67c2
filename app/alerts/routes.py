"""Alert rules, the live alert stream (server-sent events) and alert history."""

import logging
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, Path, Query, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sse_starlette import EventSourceResponse, ServerSentEvent

from app.alerts import queries as model
from app.alerts.deps import AlertStreamDep, FanoutDep
from app.alerts.feed import AlertFeed
from app.alerts.rules import (
    Bound,
    ForecastCondition,
    Rule,
    check_clear_threshold,
    check_forecast,
)
from app.core.database import transaction
from app.core.deps import ConnectionDep, PoolDep, RedisDep, SettingsDep, TenantDep
from app.core.errors import InvalidInput, LimitReached, NotFound
from app.core.params import check_param, parse_optional_time
from app.core.responses import errors, json_response
from app.core.settings import Settings
from app.core.timeparse import DURATION_PATTERN, parse_duration

log = logging.getLogger("app.alerts")

router = APIRouter(tags=["alerts"], responses=errors(401, 403, 404, 422, 429, 503))


def _text(value: str) -> str:
    try:
        return check_param(value, "value")
    except InvalidInput as error:
        raise ValueError(error.message) from None


Name = Annotated[str, Field(min_length=1, pattern="^[^\\u0000]+$"), AfterValidator(_text)]
Number = Annotated[float, Field(allow_inf_nan=False)]
RuleId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Duration = Annotated[
    Annotated[float, Field(ge=0)] | Annotated[str, Field(pattern=DURATION_PATTERN)],
    Field(description='seconds, or a duration such as "90s", "5m", "1h"'),
]


class ForecastIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    horizon: Duration = Field(description="how far ahead the forecast may cross the threshold")
    bound: Bound = Field(
        "forecast",
        description="the series compared with the threshold: the point forecast (default) "
        "or an edge of the 80 % / 95 % prediction interval",
    )


class ForecastOut(BaseModel):
    horizon: float
    bound: str


class RuleIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "example": {"device_id": "deviceA", "metric": "temp", "op": ">", "threshold": 32}
        },
    )

    device_id: Name | None = Field(None, description="one device; or give site_id, or neither")
    site_id: Name | None = Field(None, description="every device of one site")
    metric: Name
    op: Literal[">", ">=", "<", "<=", "==", "!="]
    threshold: Number
    clear_threshold: Number | None = Field(
        None, description="hysteresis: a firing alert resolves only past this value"
    )
    for_: Duration = Field(0, alias="for", description="how long the condition must hold")
    cooldown: Duration = Field(0, description="least event time between two firings")
    forecast: ForecastIn | None = Field(
        None,
        description="a predicted breach: evaluated by the forecaster against the device's "
        "(or site's) latest model, notified as `predicted` and `resolved`",
    )


class RuleOut(BaseModel):
    id: int
    device_id: str | None
    site_id: str | None
    metric: str
    op: str
    threshold: float
    clear_threshold: float | None
    for_: float = Field(alias="for")
    cooldown: float
    version: int
    created_at: str | None
    forecast: ForecastOut | None = None


def _check_names(body: RuleIn, settings: Settings) -> None:
    for field in ("device_id", "site_id", "metric"):
        value = getattr(body, field)
        if value is not None and len(value) > settings.max_name_length:
            raise InvalidInput(
                f"must be at most {settings.max_name_length} characters", field=field
            )
    if body.device_id is not None and body.site_id is not None:
        raise InvalidInput("give device_id or site_id, not both", field="site_id")


async def _publish(redis: Redis, settings: Settings, rule: Rule) -> None:
    try:
        await redis.publish(settings.alert_rules_channel, orjson.dumps(rule.message()))
    except RedisError as error:
        # Stored is what counts: the workers' periodic sync picks the change up.
        log.warning("rule change %s not published (%r)", rule.rule_id, error)


@router.post("/v1/alerts", status_code=201, response_model=RuleOut)
async def create_alert(
    body: RuleIn, settings: SettingsDep, pool: PoolDep, redis: RedisDep, tenant: TenantDep
) -> Response:
    """Register an alert rule; the workers (with a forecast, the forecaster) evaluate it."""
    _check_names(body, settings)
    check_clear_threshold(body.op, body.threshold, body.clear_threshold)
    max_s = settings.alert_max_duration_s
    for_s = parse_duration(body.for_, "for", max_s=max_s)
    cooldown_s = parse_duration(body.cooldown, "cooldown", max_s=max_s)
    forecast: str | None = None
    if body.forecast is not None:
        check_forecast(body.op, body.device_id, body.site_id, for_s, cooldown_s)
        horizon_s = parse_duration(body.forecast.horizon, "forecast.horizon", max_s=max_s)
        if horizon_s <= 0:
            raise InvalidInput("must be longer than zero", field="forecast.horizon")
        condition = ForecastCondition(horizon_s, body.forecast.bound)
        forecast = orjson.dumps(condition.stored()).decode()
    fields = {
        "device_id": body.device_id,
        "site_id": body.site_id,
        "metric": body.metric,
        "op": body.op,
        "threshold": body.threshold,
        "clear_threshold": body.clear_threshold,
        "for_s": for_s,
        "cooldown_s": cooldown_s,
        "forecast": forecast,
    }
    async with transaction(pool) as conn:
        if await model.count_rules(conn, tenant) >= settings.tenant_max_rules:
            raise LimitReached(
                f"the tenant has {settings.tenant_max_rules} alert rules, its limit; delete "
                "some first",
                field="rule",
            )
        rule = await model.create_rule(conn, tenant, fields)
    # Published after the commit: a worker never holds a rule that was rolled back.
    await _publish(redis, settings, rule)
    return json_response(rule.public(), 201, {"Location": f"/v1/alerts/{rule.rule_id}"})


@router.get("/v1/alerts", response_model=list[RuleOut])
async def list_alerts(conn: ConnectionDep, tenant: TenantDep) -> Response:
    """List the caller's alert rules."""
    rules = await model.list_rules(conn, tenant)
    return json_response([rule.public() for rule in rules])


@router.get("/v1/alerts/stream", response_class=EventSourceResponse)
async def stream_alerts(
    settings: SettingsDep,
    fanout: FanoutDep,
    alert_stream: AlertStreamDep,
    tenant: TenantDep,
    device_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    site_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    rule_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> EventSourceResponse:
    """Stream alert transitions as server-sent events; resume with Last-Event-ID."""
    if fanout.clients_of(tenant) >= settings.tenant_max_sse:
        raise LimitReached(
            f"the tenant has {settings.tenant_max_sse} alert streams open, its limit",
            field="stream",
            headers={"Retry-After": str(settings.retry_after_s)},
        )
    feed = AlertFeed(
        fanout,
        alert_stream,
        tenant,
        device_id=device_id,
        site_id=site_id,
        rule_id=rule_id,
        retry_ms=settings.alert_sse_retry_ms,
    )
    await feed.open(last_event_id)
    return EventSourceResponse(
        feed.frames(),
        ping=settings.alert_sse_heartbeat_s,
        ping_message_factory=lambda: ServerSentEvent(comment="heartbeat", sep="\n"),
        sep="\n",
        send_timeout=settings.alert_sse_send_timeout_s,
    )


@router.get("/v1/alerts/history")
async def alert_history(
    conn: ConnectionDep,
    tenant: TenantDep,
    device_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    rule_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    from_time: Annotated[str | None, Query(description="epoch ms or ISO 8601")] = None,
    to_time: Annotated[str | None, Query(description="epoch ms or ISO 8601; exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Alert transitions by event time, oldest first."""
    start = parse_optional_time(from_time, "from_time")
    end = parse_optional_time(to_time, "to_time")
    if start is not None and end is not None and end < start:
        raise InvalidInput("must not be before from_time", field="to_time")
    rows = await model.list_history(
        conn,
        tenant,
        device_id=device_id,
        rule_id=rule_id,
        from_time=start,
        to_time=end,
        limit=limit,
    )
    alerts: list[dict[str, Any]] = [
        {"id": row["alert_id"], **orjson.loads(row["payload"])} for row in rows
    ]
    return json_response({"alerts": alerts})


@router.get("/v1/alerts/{rule_id}", response_model=RuleOut)
async def get_alert(rule_id: RuleId, conn: ConnectionDep, tenant: TenantDep) -> Response:
    """Show one alert rule."""
    rule = await model.get_rule(conn, tenant, rule_id)
    if rule is None:
        raise NotFound(f"no alert rule {rule_id}", field="rule_id")
    return json_response(rule.public())


@router.delete("/v1/alerts/{rule_id}", status_code=204)
async def delete_alert(
    rule_id: RuleId, settings: SettingsDep, pool: PoolDep, redis: RedisDep, tenant: TenantDep
) -> Response:
    """Delete an alert rule; its firing alerts are not resolved, they stop being evaluated."""
    async with transaction(pool) as conn:
        rule = await model.delete_rule(conn, tenant, rule_id)
        if rule is None:
            raise NotFound(f"no alert rule {rule_id}", field="rule_id")
    await _publish(redis, settings, rule)
    return Response(status_code=204)
