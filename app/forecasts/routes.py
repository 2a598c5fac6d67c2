"""GET /v1/forecast: the forecaster's GET /predict, through the API."""

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from app.core.deps import IdentityDep
from app.core.responses import errors
from app.forecasts.deps import ForecastDep
from app.forecasts.schemas import Prediction

router = APIRouter(tags=["forecast"], responses=errors(401, 403, 404, 409, 422, 503))

# The forecaster's answers passed on as they are; any other is a failure of it (503).
PASSED = frozenset({200, 401, 403, 404, 409, 422, 503})

Name = Annotated[str | None, Query(min_length=1, max_length=128)]
Duration = Annotated[str | None, Query(max_length=32, description="e.g. 60m, 2h; default 1h")]


@router.get("/v1/forecast", response_model=Prediction)
async def forecast(
    request: Request,
    identity: IdentityDep,
    forecasts: ForecastDep,
    device_id: Name = None,
    site_id: Name = None,
    metric: Name = None,
    horizon: Duration = None,
    step: Annotated[str | None, Query(max_length=32, description="whole minutes")] = None,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Response:
    """A device's or site's forecast with 80 % and 95 % bands, from the forecaster."""
    given = {"device_id": device_id, "site_id": site_id, "metric": metric, "horizon": horizon,
             "step": step, "version": None if version is None else str(version)}  # fmt: skip
    params = {name: value for name, value in given.items() if value is not None}
    answer = await forecasts.predict(params, identity, request.headers.get("x-api-key"))
    if answer.status_code not in PASSED:
        raise forecasts.refusal(answer.status_code)
    retry = answer.headers.get("retry-after")
    headers = {"Retry-After": retry} if retry else None
    return Response(answer.content, answer.status_code, headers, media_type="application/json")
