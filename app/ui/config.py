"""What the dashboard learns first: how callers sign in and, for a known caller, its tenant,
its metric names, whether forecasts can be had, and the read limits it should keep to."""

from typing import Any

import asyncpg

from app.core.settings import Settings
from app.core.tenancy import Identity, asks_for_key
from app.fleet.queries import metric_names
from app.forecasts.client import ForecastClient

# Rollup intervals to offer; the aggregate endpoint takes any whole number of minutes.
INTERVALS = ("1m", "5m", "15m", "1h", "6h", "1d")
MAX_METRICS = 500


def known_metrics(settings: Settings) -> set[str]:
    """The metrics the read and forecast endpoints name in their settings."""
    return {
        settings.power_metric,
        settings.forecast_metric,
        settings.efficiency_dc_metric,
        settings.efficiency_ac_metric,
    }


async def ui_config(
    settings: Settings,
    identity: Identity | None,
    pool: asyncpg.Pool,
    forecasts: ForecastClient,
) -> dict[str, Any]:
    """The configuration; without a caller (keys asked for, none sent) nothing of a tenant's
    and nothing of the deployment beyond the sign-in mode and the read limits."""
    answer: dict[str, Any] = {
        # A trusted tenant header is set by the gateway in front: the browser signs in there.
        "auth": "key" if asks_for_key(settings) else "disabled",
        "authenticated": identity is not None,
        "tenant": None,
        "metrics": None,
        "forecast": None,
        "max_points": min(settings.ui_max_points, settings.aggregate_max_buckets),
        "intervals": list(INTERVALS),
    }
    if identity is None:
        return answer
    async with pool.acquire() as conn:
        names = await metric_names(conn, identity.tenant, MAX_METRICS)
    answer["tenant"] = identity.tenant
    answer["metrics"] = sorted(known_metrics(settings) | set(names))
    answer["forecast"] = {"available": await forecasts.available()}
    return answer
