"""The dashboard: its configuration (public; more for a known caller) and its static files."""

from fastapi import APIRouter, Response

from app.core.deps import OptionalIdentityDep, PoolDep, SettingsDep
from app.core.responses import errors, json_response
from app.forecasts.deps import ForecastDep
from app.ui import schemas
from app.ui.config import ui_config
from app.ui.deps import FrontendDep

router = APIRouter(tags=["dashboard"])


@router.get("/v1/ui/config", response_model=schemas.UiConfig, responses=errors(401, 403, 503))
async def config(
    settings: SettingsDep, identity: OptionalIdentityDep, pool: PoolDep, forecasts: ForecastDep
) -> Response:
    """How to sign in; with a valid key (or none needed) the tenant, metrics and forecasting."""
    return json_response(await ui_config(settings, identity, pool, forecasts))


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def index(frontend: FrontendDep) -> Response:
    """The dashboard's page."""
    return frontend.page()


@router.api_route("/assets/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
async def asset(path: str, frontend: FrontendDep) -> Response:
    """A content-hashed file of the dashboard's build."""
    return frontend.asset(path)
