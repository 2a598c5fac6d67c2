"""The shape of the dashboard's configuration, for the OpenAPI document."""

from typing import Literal

from pydantic import BaseModel


class Forecasting(BaseModel):
    available: bool


class UiConfig(BaseModel):
    auth: Literal["disabled", "key"]
    authenticated: bool
    tenant: str | None
    metrics: list[str] | None
    forecast: Forecasting | None
    max_points: int
    intervals: list[str]
