"""Training and prediction as the routes call them: read, fit in the pool, store, answer.

One training is one read of the rollups (on the read replica when one is configured), one job in the process pool and one transaction
that stores the new version; the predicted-breach rules of the series are evaluated after
the commit. A prediction reads a version's record and (on a cache miss) its artifact, and
predicts in this process.
"""

import time
from collections import Counter
from typing import Any

import asyncpg
import numpy as np

from app.core.database import transaction
from app.core.errors import InvalidInput, NotFound, TelemetryError
from app.core.replica import ReadPool
from app.core.settings import Settings
from app.core.timeparse import iso
from forecast import history, jobs, models
from forecast.alerts import PredictedAlerts
from forecast.metrics import MODELS_TRAINED, TRAIN_REQUEST_SECONDS, TRAIN_SECONDS
from forecast.params import horizon_steps, step_text
from forecast.pool import TrainingPool
from forecast.predictor import Predictor
from forecast.queries import (
    StoredModel,
    Target,
    get_artifact,
    get_model,
    insert_model,
    latest_model,
    list_models,
    trained_steps,
)
from forecast.series import Gap, Series, fingerprint

# A training record lists this many gaps; the counts cover them all.
MAX_GAPS_LISTED = 100


class TooLittleHistory(InvalidInput):
    """Fewer observed points in the window than a model needs: says how many of each."""

    code = "too_little_data"

    def __init__(self, message: str, *, have: int, need: int, field: str) -> None:
        super().__init__(message, field=field)
        self.have = have
        self.need = need

    def body(self) -> dict[str, Any]:
        body = super().body()
        body["error"].update(have_points=self.have, need_points=self.need)
        return body


class ArtifactUnusable(TelemetryError):
    """A stored version this process cannot load (another major library version)."""

    status = 409
    code = "artifact_unusable"


def describe(target: Target) -> str:
    kind = "site" if target.scope == "site" else "sensor"
    return f"{kind} {target.key!r}"


def _subject(target: Target) -> dict[str, Any]:
    name = "site_id" if target.scope == "site" else "sensor_id"
    return {"scope": target.scope, name: target.key, "metric": target.metric}


def _gaps(gaps: tuple[Gap, ...]) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    steps: Counter[str] = Counter()
    for gap in gaps:
        counts[gap.action] += 1
        steps[gap.action] += gap.steps
    listed = [
        {"from": iso(g.start_us), "to": iso(g.end_us), "steps": g.steps, "action": g.action}
        for g in gaps[:MAX_GAPS_LISTED]
    ]
    return {
        "count": len(gaps),
        "by_action": {a: {"gaps": counts[a], "steps": steps[a]} for a in sorted(counts)},
        "list": listed,
        "truncated": len(gaps) > MAX_GAPS_LISTED,
    }


def _scores(trained: models.Trained) -> dict[str, Any]:
    chosen = trained.scores.get(trained.model)
    baseline = trained.scores.get("SeasonalNaive")

    def score(name: str, value: models.Score | None) -> dict[str, Any] | None:
        if value is None:
            return None
        return {"model": name, "mase": value["mase"], "mae": value["mae"]}

    return {
        "score": score(trained.model, chosen),
        "baseline": score("SeasonalNaive", baseline),
        "backtest": {
            "folds": trained.folds,
            "horizon_steps": trained.horizon_steps,
            "metric": "MASE: MAE over the folds / seasonal naive's MAE on the same folds",
            "candidates": dict(trained.scores),
        },
    }


def model_record(model: StoredModel) -> dict[str, Any]:
    """A version as GET /models and POST /train show it (the artifact stays stored)."""
    return {
        **_subject(model.target),
        "version": model.version,
        "model": model.model,
        "step": step_text(model.step_s),
        "step_s": model.step_s,
        "fingerprint": model.fingerprint,
        "created_at": iso(model.created_at_us),
        "artifact_bytes": model.size,
        **model.metadata,
    }


async def train(
    db: asyncpg.Pool,
    reads: ReadPool,
    training: TrainingPool,
    alerts: PredictedAlerts,
    settings: Settings,
    target: Target,
    field: str,
    *,
    lo_us: int,
    hi_us: int,
    step_s: int,
) -> dict[str, Any]:
    """Train a new version of the target's model on [lo_us, hi_us) at step_s."""
    started = time.perf_counter()

    async def read(conn: asyncpg.Connection) -> tuple[Series, bool]:
        series = await history.load(conn, target, lo_us, hi_us, step_s)
        observed = int(np.count_nonzero(~np.isnan(series.values)))
        return series, observed == 0 and await history.readings(conn, target) == 0

    # The history is a read: the replica's when one serves, the primary's otherwise.
    series, silent = await reads.run(read)
    if silent:
        raise NotFound(f"{describe(target)} has sent no {target.metric!r}", field=field)
    read_s = time.perf_counter() - started
    fitted = await training.run(
        jobs.fit, series.start_us, step_s, series.values, settings.forecast_backtest_steps
    )
    if fitted.trained is None:
        raise TooLittleHistory(
            f"too little data to forecast {describe(target)}: {fitted.observed_points} observed "
            f"steps of {step_text(step_s)} in [{iso(lo_us)}, {iso(hi_us)}) after the gap policy, "
            f"need at least {fitted.need_points}; widen the window or use a coarser step",
            have=fitted.observed_points,
            need=fitted.need_points,
            field="from",
        )
    trained = fitted.trained
    TRAIN_SECONDS.observe(fitted.seconds)
    metadata: dict[str, Any] = {
        "window": {"from": iso(lo_us), "to": iso(hi_us)},
        "trained_on": {"from": iso(fitted.start_us), "to": iso(fitted.end_us)},
        "points": len(series),
        "observed_points": fitted.observed_points,
        "need_points": fitted.need_points,
        "outliers_replaced": fitted.outliers_replaced,
        "gaps": _gaps(fitted.gaps),
        "season_length": trained.season_length,
        "params": trained.params,
        **_scores(trained),
        "series_fingerprint": trained.fingerprint,
        "versions": trained.versions,
        "train_seconds": round(fitted.seconds, 4),
    }
    # The fingerprint of the data as read (holes included), before Hampel and the gaps:
    # the same rollups give the same fingerprint, whatever the cleaning does.
    digest = fingerprint(series)
    async with transaction(db) as conn:
        version, created_us, size = await insert_model(
            conn,
            target,
            step_s=step_s,
            model=trained.model,
            fingerprint=digest,
            artifact=trained.artifact,
            metadata=metadata,
        )
    MODELS_TRAINED.labels(trained.model).inc()
    stored = StoredModel(target, version, step_s, trained.model, digest, metadata, created_us, size)
    made = await alerts.after_training(target)
    seconds = time.perf_counter() - started
    TRAIN_REQUEST_SECONDS.observe(seconds)
    return {
        **model_record(stored),
        "seconds": round(seconds, 4),
        "read_seconds": round(read_s, 4),
        "alerts": made,
    }


def _steps_text(steps: dict[int, list[int]]) -> str:
    return ", ".join(
        f"{step_text(step)} (version{'s' if len(v) > 1 else ''} {', '.join(map(str, v))})"
        for step, v in steps.items()
    )


async def _never_trained(conn: asyncpg.Connection, target: Target, field: str) -> NotFound:
    if await history.readings(conn, target) == 0:
        return NotFound(
            f"unknown {describe(target)}: it has sent no {target.metric!r}", field=field
        )
    return NotFound(
        f"{describe(target)} has never been trained for {target.metric!r}: POST /train first",
        field=field,
    )


async def _pick(
    conn: asyncpg.Connection,
    target: Target,
    field: str,
    step_s: int | None,
    version: int | None,
) -> StoredModel:
    """The version asked for, or the newest (at the step, when one is given)."""
    if version is not None:
        model = await get_model(conn, target, version)
        if model is None:
            latest = await latest_model(conn, target)
            if latest is None:
                raise await _never_trained(conn, target, field)
            raise NotFound(
                f"{describe(target)} has no version {version} for {target.metric!r} "
                f"(versions 1 to {latest.version})",
                field="version",
            )
        if step_s is not None and step_s != model.step_s:
            raise InvalidInput(
                f"version {version} was trained at a step of {step_text(model.step_s)}, "
                f"not {step_text(step_s)}",
                field="step",
            )
        return model
    model = await latest_model(conn, target, step_s)
    if model is not None:
        return model
    steps = await trained_steps(conn, target)
    if not steps:
        raise await _never_trained(conn, target, field)
    assert step_s is not None
    raise InvalidInput(
        f"{describe(target)} has no model for {target.metric!r} at a step of "
        f"{step_text(step_s)}; trained steps: {_steps_text(steps)}",
        field="step",
    )


async def predict(
    db: asyncpg.Pool,
    predictor: Predictor,
    settings: Settings,
    target: Target,
    field: str,
    *,
    step_s: int | None,
    horizon_s: float,
    version: int | None,
) -> dict[str, Any]:
    """Points with 80 % and 95 % intervals from one stored version."""
    async with db.acquire() as conn:
        model = await _pick(conn, target, field, step_s, version)
    steps = horizon_steps(horizon_s, model.step_s, settings)

    async def artifact() -> bytes:
        async with db.acquire() as conn:
            data = await get_artifact(conn, target, model.version)
        assert data is not None, "versions are never deleted"
        return data

    try:
        forecast = await predictor.predict(target, model.version, steps, artifact)
    except models.ArtifactError as error:
        raise ArtifactUnusable(
            f"version {model.version} cannot be used here ({error})", field="version"
        ) from None
    times = forecast.times_us().tolist()
    columns = zip(
        times,
        forecast.mean.tolist(),
        forecast.lo80.tolist(),
        forecast.hi80.tolist(),
        forecast.lo95.tolist(),
        forecast.hi95.tolist(),
        strict=True,
    )
    return {
        **_subject(target),
        "version": model.version,
        "model": model.model,
        "step": step_text(model.step_s),
        "step_s": model.step_s,
        "horizon": step_text(steps * model.step_s),
        "horizon_steps": steps,
        "trained_at": iso(model.created_at_us),
        "points": [
            {"time": iso(t), "forecast": f, "lo80": a, "hi80": b, "lo95": c, "hi95": d}
            for t, f, a, b, c, d in columns
        ],
    }


async def versions(
    db: asyncpg.Pool, target: Target, *, any_metric: bool, limit: int
) -> dict[str, Any]:
    """The versions of a device's (or site's) models, newest first per metric."""
    async with db.acquire() as conn:
        found = await list_models(
            conn,
            target.tenant,
            target.scope,
            target.key,
            None if any_metric else target.metric,
            limit,
        )
    subject = _subject(target)
    if any_metric:
        subject.pop("metric")
    return {**subject, "models": [model_record(model) for model in found]}
