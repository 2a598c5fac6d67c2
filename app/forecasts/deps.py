"""Dependency aliases of the forecast proxy."""

from typing import Annotated

from fastapi import Depends, Request

from app.forecasts.client import ForecastClient


async def _forecasts(request: Request) -> ForecastClient:
    client: ForecastClient = request.app.state.forecasts
    return client


ForecastDep = Annotated[ForecastClient, Depends(_forecasts)]
