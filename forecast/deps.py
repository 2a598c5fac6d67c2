"""Dependency aliases of the forecaster (the shared ones are in app.core.deps)."""

from typing import Annotated

from fastapi import Depends, Request

from forecast.alerts import PredictedAlerts
from forecast.pool import TrainingPool
from forecast.predictor import Predictor


async def _training(request: Request) -> TrainingPool:
    training: TrainingPool = request.app.state.training
    return training


async def _predictor(request: Request) -> Predictor:
    predictor: Predictor = request.app.state.predictor
    return predictor


async def _alerts(request: Request) -> PredictedAlerts:
    alerts: PredictedAlerts = request.app.state.predicted_alerts
    return alerts


TrainingDep = Annotated[TrainingPool, Depends(_training)]
PredictorDep = Annotated[Predictor, Depends(_predictor)]
PredictedAlertsDep = Annotated[PredictedAlerts, Depends(_alerts)]
