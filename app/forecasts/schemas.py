"""The forecaster's prediction answer: one shape for the forecaster (forecast/schemas.py
re-exports it) and the API's proxy of it, which never imports forecast/."""

from typing import Literal

from pydantic import BaseModel


class Point(BaseModel):
    time: str
    forecast: float
    lo80: float
    hi80: float
    lo95: float
    hi95: float


class Prediction(BaseModel):
    scope: Literal["device", "site"]
    sensor_id: str | None = None
    site_id: str | None = None
    metric: str
    version: int
    model: str
    step: str
    step_s: int
    horizon: str
    horizon_steps: int
    trained_at: str
    points: list[Point]
