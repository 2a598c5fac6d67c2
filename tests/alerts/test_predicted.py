"""Predicted-breach rules: fired by the forecaster before the real breach, over the same
alert stream, SSE feed and history as the workers' alerts; resolved by a later forecast."""

import math
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from redis.asyncio import Redis

from app.alerts.rules import ForecastCondition, Rule, RuleSet
from app.alerts.state import AlertStream
from app.core.settings import Settings
from app.main import create_app as create_api
from forecast.alerts import assess
from forecast.main import create_app as create_forecaster
from forecast.models import Forecast
from forecast.pool import TrainingPool
from tests.alerts.test_alerts import run_alert_worker
from tests.alerts.test_sse import serve, stream
from tests.forecast.service_fixtures import QUARTER, T0, Write, iso, readings
from tests.helpers import post_batch, wait_for
from tests.reads.test_reads import refresh
from workers.alerts import Alerts

DAYS3 = 3 * 96


def rising(cells: int) -> list[float]:
    """10 → 30 over three days at 15 minutes: 32 is crossed some hours after the end."""
    return [10 + 0.07 * i + 0.1 * math.sin(7.3 * i) for i in range(cells)]


def flat(cells: int) -> list[float]:
    return [20 + 0.2 * math.sin(7.3 * i) for i in range(cells)]


async def add_rule(api: httpx.AsyncClient, **rule: Any) -> dict[str, Any]:
    response = await api.post("/v1/alerts", json=rule)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def window(first: int, cells: int) -> str:
    return f"from={iso(T0 + first * QUARTER)}&to={iso(T0 + (first + cells) * QUARTER)}"


async def test_a_predicted_breach_reaches_sse_before_the_breach_and_resolves_later(
    forecast_settings: Settings,
    redis: Redis,
    api: httpx.AsyncClient,
    forecaster: httpx.AsyncClient,
) -> None:
    predicted_rule = await add_rule(
        api, device_id="d1", metric="temp", op=">", threshold=32, forecast={"horizon": "12h"}
    )
    assert predicted_rule["forecast"] == {"horizon": 43200.0, "bound": "forecast"}
    plain_rule = await add_rule(api, device_id="d1", metric="temp", op=">", threshold=32)
    alerts = Alerts(forecast_settings, redis, name="a1")
    await alerts.sync()
    # The workers hold the predicted-breach rule but never compare an event with it.
    scoped = alerts.rules.for_tenant("default")
    assert scoped is not None
    assert [r.rule_id for r in scoped.by_device["d1"]] == [plain_rule["id"]]

    async def store(events: list[dict[str, Any]]) -> None:
        await post_batch(api, events)
        await run_alert_worker(forecast_settings, redis, alerts, "w1")
        await refresh(forecast_settings)

    sse_app = create_api(forecast_settings)
    try:
        async with serve(sse_app) as base, stream(base, device_id="d1") as reader:
            await store(readings("d1", rising(DAYS3), metric="temp"))
            trained = (
                await forecaster.post(
                    f"/train?sensor_id=d1&metric=temp&step=15m&{window(0, DAYS3)}"
                )
            ).json()
            assert trained["alerts"] == [
                {
                    "rule_id": predicted_rule["id"],
                    "state": "predicted",
                    "alert_id": trained["alerts"][0]["alert_id"],
                }
            ]

            first = await reader.alert()
            assert first["state"] == "predicted" and first["rule_id"] == predicted_rule["id"]
            last_point = T0 + (DAYS3 - 1) * QUARTER
            assert first["predicted_time"] > iso(last_point)
            assert first["predicted_time"] < iso(last_point + 12 * 4 * QUARTER)
            assert first["forecast_value"] > 32 and first["metrics"] == {
                "temp": first["forecast_value"]
            }
            assert first["model_version"] == 1 and first["bound"] == "forecast"
            assert first["time"] == "2025-03-06 00:00:00" and first["site_id"] == "s1"
            assert {"device_id", "tenant_id", "metric", "op", "threshold"} <= first.keys()

            # The real breach comes later, and the workers fire the plain rule only.
            await store(readings("d1", [33.0], metric="temp", start=T0 + (DAYS3 + 8) * QUARTER))
            real = await reader.alert()
            assert (real["state"], real["rule_id"]) == ("firing", plain_rule["id"])

            # Then the level falls back and stays: the next forecast no longer crosses.
            later = DAYS3 + 12
            await store(readings("d1", flat(DAYS3), metric="temp", start=T0 + later * QUARTER))
            cleared = await reader.alert()
            assert (cleared["state"], cleared["rule_id"]) == ("resolved", plain_rule["id"])
            retrained = await forecaster.post(
                f"/train?sensor_id=d1&metric=temp&step=15m&{window(later, DAYS3)}"
            )
            assert retrained.json()["alerts"][0]["state"] == "resolved"
            resolved = await reader.alert()
            assert (resolved["state"], resolved["rule_id"]) == ("resolved", predicted_rule["id"])
            assert resolved["predicted_time"] is None and resolved["forecast_value"] < 32
            assert resolved["model_version"] == 2

        # Training again on the same data changes nothing: no second notification.
        again = await forecaster.post(
            f"/train?sensor_id=d1&metric=temp&step=15m&{window(later, DAYS3)}"
        )
        assert again.json()["alerts"] == []

        # The history writer records them like every other alert.
        assert await alerts.record_history() == 4
        history = (await api.get("/v1/alerts/history?device_id=d1")).json()["alerts"]
        assert [(h["state"], h["rule_id"]) for h in history] == [
            ("predicted", predicted_rule["id"]),
            ("firing", plain_rule["id"]),
            ("resolved", plain_rule["id"]),
            ("resolved", predicted_rule["id"]),
        ]
        assert history[0]["predicted_time"] == first["predicted_time"]
    finally:
        await alerts.database.close()


async def test_the_scheduled_pass_evaluates_rules_added_after_training_on_a_site(
    forecast_settings: Settings,
    redis: Redis,
    training_pool: TrainingPool,
    api: httpx.AsyncClient,
    write: Write,
) -> None:
    await write(readings("d1", rising(DAYS3), metric="temp"))
    settings = forecast_settings.model_copy(update={"forecast_alert_interval_s": 0.05})
    app = create_forecaster(settings, training=training_pool)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://forecast") as http:
            trained = await http.post(f"/train?site_id=s1&metric=temp&step=15m&{window(0, DAYS3)}")
            assert trained.status_code == 201 and trained.json()["alerts"] == []
            rule = await add_rule(
                api,
                site_id="s1",
                metric="temp",
                op=">=",
                threshold=32,
                forecast={"horizon": "1d", "bound": "lo80"},
            )

            async def notified() -> bool:
                return bool(await redis.xlen(settings.alert_stream))

            await wait_for(notified)
    entries: Any = await redis.xrange(settings.alert_stream)
    alert = orjson.loads(entries[0][1][b"d"])
    assert (alert["state"], alert["rule_id"], alert["bound"]) == ("predicted", rule["id"], "lo80")
    assert alert["device_id"] is None and alert["site_id"] == "s1"
    assert len(entries) == 1  # every later pass found the same verdict

    alerts = Alerts(settings, redis, name="a1")
    try:
        assert await alerts.record_history() == 1
    finally:
        await alerts.database.close()
    history = (await api.get("/v1/alerts/history")).json()["alerts"]
    assert [(h["state"], h["device_id"], h["site_id"]) for h in history] == [
        ("predicted", None, "s1")
    ]


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"metric": "temp", "op": ">", "threshold": 1, "forecast": {"horizon": "1h"}}, "forecast"),
        (
            {
                "device_id": "d1",
                "metric": "t",
                "op": "==",
                "threshold": 1,
                "forecast": {"horizon": "1h"},
            },
            "op",
        ),
        (
            {
                "device_id": "d1",
                "metric": "t",
                "op": ">",
                "threshold": 1,
                "for": "5m",
                "forecast": {"horizon": "1h"},
            },
            "for",
        ),
        (
            {
                "device_id": "d1",
                "metric": "t",
                "op": ">",
                "threshold": 1,
                "cooldown": 60,
                "forecast": {"horizon": "1h"},
            },
            "cooldown",
        ),
        (
            {
                "device_id": "d1",
                "metric": "t",
                "op": ">",
                "threshold": 1,
                "forecast": {"horizon": "0s"},
            },
            "forecast.horizon",
        ),
        (
            {
                "device_id": "d1",
                "metric": "t",
                "op": ">",
                "threshold": 1,
                "forecast": {"horizon": "9w"},
            },
            "forecast.horizon",
        ),
        (
            {
                "device_id": "d1",
                "metric": "t",
                "op": ">",
                "threshold": 1,
                "forecast": {"horizon": "1h", "bound": "mid"},
            },
            "forecast.bound",
        ),
        (
            {"device_id": "d1", "metric": "t", "op": ">", "threshold": 1, "forecast": {}},
            "forecast.horizon",
        ),
    ],
)
async def test_forecast_conditions_are_checked(
    api: httpx.AsyncClient, rule: dict[str, Any], field: str
) -> None:
    response = await api.post("/v1/alerts", json=rule)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


def test_rule_sets_leave_predicted_breach_rules_out() -> None:
    rules = RuleSet()
    plain = Rule("t", 1, "temp", ">", 32, device_id="d1", version=1)
    predicted = Rule(
        "t", 2, "temp", ">", 32, device_id="d1", version=2, forecast=ForecastCondition(60)
    )
    rules.apply([plain, predicted])
    scoped = rules.for_tenant("t")
    assert scoped is not None and scoped.by_device == {"d1": [plain]}
    # A change published to the workers keeps its condition.
    assert Rule.from_message(predicted.message()) == predicted


def forecast(mean: list[float], spread: float = 1.0) -> Forecast:
    m = np.array(mean)
    return Forecast("AutoETS", 0, 900, m, m - spread, m + spread, m - 2 * spread, m + 2 * spread)


def test_assess_reads_the_chosen_bound_within_the_horizon() -> None:
    up = forecast([30, 31, 31.5, 33, 35])

    def rule(
        op: str = ">", bound: str = "forecast", horizon: float = 3600, clear: float | None = None
    ) -> Rule:
        return Rule(
            "t",
            1,
            "temp",
            op,
            32,
            device_id="d",
            clear_threshold=clear,
            forecast=ForecastCondition(horizon, bound),
        )

    # The point forecast crosses at the 4th step (45 min), inside an hour (4 steps).
    assert assess(rule(), up) == assess(rule(horizon=3000), up)
    verdict = assess(rule(), up)
    assert (verdict.kind, verdict.index, verdict.value) == ("b", 3, 33.0)
    assert assess(rule(horizon=2700), up).kind == "c"  # 3 steps: never past 31.5
    assert assess(rule(horizon=2700), up).value == 31.5  # the closest approach
    # The upper 80 % edge crosses a step earlier, the lower 95 % edge later.
    assert assess(rule(bound="hi80"), up).index == 2
    assert assess(rule(bound="lo95", horizon=4500), up).index == 4
    # Between the clear threshold and the threshold, a predicted state holds.
    assert assess(rule(horizon=2700, clear=30.5), up).kind == "h"
    down = forecast([40, 36, 31])
    assert assess(rule(op="<=", horizon=2700), down).index == 2
    assert assess(rule(op="<", horizon=1800), down).value == 36.0


async def test_a_predicted_state_moves_once_and_never_back_to_an_older_model(
    forecast_settings: Settings, redis: Redis
) -> None:
    alert_stream = AlertStream(redis, forecast_settings.alert_stream, "test:predicted", 1000, 60)
    key = "test:predicted-state"

    async def move(version: int, verdict: str) -> str | None:
        moved = await alert_stream.predicted(
            key, version, verdict, b'{"state":"predicted"}', b'{"state":"resolved"}'
        )
        return moved[1] if moved else None

    assert await move(1, "c") is None  # ok stays ok
    assert await move(2, "b") == "predicted"
    assert await move(2, "b") is None  # the scheduled pass, same model: nothing new
    assert await move(1, "c") is None  # a late verdict of an older model is ignored
    assert await move(3, "h") is None  # within the clear band: holds
    assert await move(3, "c") == "resolved"
    entries: Any = await redis.xrange(forecast_settings.alert_stream)
    assert [orjson.loads(fields[b"d"])["state"] for _, fields in entries] == [
        "predicted",
        "resolved",
    ]
