"""Shapes of the forecaster's answers, for the OpenAPI document (routes answer with orjson)."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

# One shape for the forecaster and the API's proxy of it (GET /v1/forecast).
from app.forecasts.schemas import Prediction as Prediction


class Score(BaseModel):
    model: str
    mase: float | None
    mae: float | None


class ModelVersion(BaseModel):
    """One stored version: its training record (more fields than listed here)."""

    model_config = ConfigDict(extra="allow")

    scope: Literal["device", "site"]
    sensor_id: str | None = None
    site_id: str | None = None
    metric: str
    version: int
    model: str
    step: str
    step_s: int
    fingerprint: str
    created_at: str
    artifact_bytes: int
    window: dict[str, str]
    trained_on: dict[str, str]
    gaps: dict[str, Any]
    score: Score | None
    baseline: Score | None
    train_seconds: float


class Training(ModelVersion):
    seconds: float
    read_seconds: float
    alerts: list[dict[str, Any]]


class Versions(BaseModel):
    scope: Literal["device", "site"]
    sensor_id: str | None = None
    site_id: str | None = None
    metric: str | None = None
    models: list[ModelVersion]


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, Any]
