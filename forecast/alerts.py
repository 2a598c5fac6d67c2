"""Predicted-breach alerts: rules with a forecast condition, evaluated against forecasts.

A rule `{"device_id": "d1", "metric": "temp", "op": ">", "threshold": 32,
"forecast": {"horizon": "30m", "bound": "forecast"}}` is `predicted` while the chosen bound
of the latest model's forecast crosses the threshold at some step within the horizon, and
`resolved` once a later forecast no longer does (past the clear threshold, when the rule
has one: between the two the state holds). The horizon counts from the forecast's first
step, the step after the data the model was trained on.

Evaluated after every training of the series and every FORECAST_ALERT_INTERVAL_S for every
series that has such rules and a model. Transitions go through the alert stream like the
workers' (app/alerts/state.py, one script: state, XADD and PUBLISH in one step), so the SSE
feed and the history writer see them as any other alert.
"""

import asyncio
import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import numpy as np
import orjson

from app.alerts.evaluator import format_time
from app.alerts.queries import forecast_rules, forecast_rules_of
from app.alerts.rules import BREACH, CLEAR, HOLD, Rule
from app.alerts.state import AlertStream, state_key
from app.core.settings import Settings
from app.core.timeparse import iso
from app.reads.queries import device_status
from forecast.metrics import PREDICTED_EVAL_FAILURES, PREDICTED_EVAL_SECONDS, PREDICTED_TRANSITIONS
from forecast.models import Forecast
from forecast.predictor import Predictor
from forecast.queries import StoredModel, Target, get_artifact, latest_model

log = logging.getLogger("forecast.alerts")


@dataclass(frozen=True, slots=True)
class Verdict:
    """b: some step crosses (index: the first), h: none crosses but one is in the clear
    band, c: clear. value: the bound at the crossing, else its closest approach."""

    kind: str
    index: int | None
    value: float


def bound_values(forecast: Forecast, bound: str) -> np.ndarray:
    series = {
        "forecast": forecast.mean,
        "lo80": forecast.lo80,
        "hi80": forecast.hi80,
        "lo95": forecast.lo95,
        "hi95": forecast.hi95,
    }
    return series[bound]


def assess(rule: Rule, forecast: Forecast) -> Verdict:
    """Where the rule's bound of the forecast first crosses its threshold, if it does."""
    assert rule.forecast is not None
    steps = max(1, math.ceil(rule.forecast.horizon_s / forecast.step_s))
    values = [float(v) for v in bound_values(forecast, rule.forecast.bound)[:steps]]
    classes = [rule.classify(v) for v in values]
    if BREACH in classes:
        index = classes.index(BREACH)
        return Verdict(BREACH, index, values[index])
    closest = max(values) if rule.op in (">", ">=") else min(values)
    return Verdict(HOLD if HOLD in classes else CLEAR, None, closest)


def payload(
    rule: Rule,
    target: Target,
    site_id: str | None,
    model: StoredModel,
    forecast: Forecast,
    verdict: Verdict,
    state: str,
) -> bytes:
    """The alert as the stream carries it: the workers' fields, then the forecast's."""
    assert rule.forecast is not None
    predicted_us = None
    if verdict.index is not None:
        predicted_us = forecast.first_us + verdict.index * forecast.step_s * 1_000_000
    return orjson.dumps(
        {
            "device_id": target.key if target.scope == "device" else None,
            "metrics": {rule.metric: verdict.value},
            # The forecast's origin: the end of the data the model saw.
            "time": format_time(forecast.first_us),
            "site_id": site_id,
            "state": state,
            "rule_id": rule.rule_id,
            "tenant_id": rule.tenant_id,
            "metric": rule.metric,
            "op": rule.op,
            "threshold": rule.threshold,
            "predicted_time": iso(predicted_us) if predicted_us is not None else None,
            "forecast_value": verdict.value,
            "bound": rule.forecast.bound,
            "horizon": rule.forecast.horizon_s,
            "model": model.model,
            "model_version": model.version,
        }
    )


def rule_target(rule: Rule) -> Target:
    if rule.site_id is not None:
        return Target(rule.tenant_id, "site", rule.site_id, rule.metric)
    assert rule.device_id is not None, "a forecast rule names a device or a site"
    return Target(rule.tenant_id, "device", rule.device_id, rule.metric)


class PredictedAlerts:
    def __init__(
        self, settings: Settings, db: asyncpg.Pool, stream: AlertStream, predictor: Predictor
    ) -> None:
        self.settings = settings
        self.db = db
        self.stream = stream
        self.predictor = predictor

    async def after_training(self, target: Target) -> list[dict[str, object]]:
        """Evaluate the series' rules against its new model. A failure is logged, not
        raised: the model is stored, and the scheduled pass tries again."""
        try:
            async with self.db.acquire() as conn:
                rules = await forecast_rules_of(
                    conn,
                    target.tenant,
                    site=target.scope == "site",
                    key=target.key,
                    metric=target.metric,
                )
            return await self.evaluate(target, rules)
        except Exception:
            PREDICTED_EVAL_FAILURES.inc()
            log.exception("predicted-breach evaluation after training %s failed", target)
            return []

    async def evaluate(self, target: Target, rules: Sequence[Rule]) -> list[dict[str, object]]:
        """Run the rules of one series against its latest model; the transitions made."""
        if not rules:
            return []
        async with self.db.acquire() as conn:
            model = await latest_model(conn, target)
            if model is None:
                return []
            site_id = target.key if target.scope == "site" else await self._site(conn, target)

        async def artifact() -> bytes:
            async with self.db.acquire() as conn:
                data = await get_artifact(conn, target, model.version)
            assert data is not None, "versions are never deleted"
            return data

        made: list[dict[str, object]] = []
        for rule in rules:
            assert rule.forecast is not None
            steps = min(
                max(1, math.ceil(rule.forecast.horizon_s / model.step_s)),
                self.settings.forecast_max_horizon_steps,
            )
            forecast = await self.predictor.predict(target, model.version, steps, artifact)
            verdict = assess(rule, forecast)
            predicted = b""
            if verdict.kind == BREACH:
                predicted = payload(rule, target, site_id, model, forecast, verdict, "predicted")
            resolved = payload(rule, target, site_id, model, forecast, verdict, "resolved")
            key = state_key(
                self.settings.forecast_alert_state_prefix, target.tenant, rule.rule_id, target.key
            )
            moved = await self.stream.predicted(
                key, model.version, verdict.kind, predicted, resolved
            )
            if moved is not None:
                alert_id, state = moved
                PREDICTED_TRANSITIONS.labels(state).inc()
                made.append({"rule_id": rule.rule_id, "state": state, "alert_id": alert_id})
        return made

    async def _site(self, conn: asyncpg.Connection, target: Target) -> str | None:
        """The device's site as its newest reading says, so site filters see the alert."""
        rows = await device_status(conn, target.tenant, target.key)
        return max(rows, key=lambda row: row.ts_us).site_id if rows else None

    async def evaluate_all(self) -> int:
        """One scheduled pass over every tenant's predicted-breach rules; transitions made."""
        async with self.db.acquire() as conn:
            rules = await forecast_rules(conn)
        groups: dict[Target, list[Rule]] = {}
        for rule in rules:
            groups.setdefault(rule_target(rule), []).append(rule)
        made = 0
        for target, group in groups.items():
            try:
                made += len(await self.evaluate(target, group))
            except Exception:
                # One series that cannot be evaluated must not hold the others back.
                PREDICTED_EVAL_FAILURES.inc()
                log.exception("predicted-breach evaluation of %s failed", target)
        return made

    async def run(self, stop: asyncio.Event) -> None:
        """evaluate_all every FORECAST_ALERT_INTERVAL_S until stopped."""
        while not stop.is_set():
            try:
                with PREDICTED_EVAL_SECONDS.time():
                    await self.evaluate_all()
            except Exception as error:
                # The database or Redis is away: the next tick tries again.
                PREDICTED_EVAL_FAILURES.inc()
                log.warning("predicted-breach pass failed (%r)", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.forecast_alert_interval_s)
