"""The forecaster's service fixtures (tests/forecast/service_fixtures.py)."""

from tests.forecast.service_fixtures import (
    api,
    api_app,
    clean,
    forecast_settings,
    forecaster,
    forecaster_app,
    training_pool,
    write,
)

__all__ = [
    "api",
    "api_app",
    "clean",
    "forecast_settings",
    "forecaster",
    "forecaster_app",
    "training_pool",
    "write",
]
