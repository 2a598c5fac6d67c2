"""The forecaster over HTTP (`FORECAST_URL`): the API proxies predictions to it and asks
whether it can serve, without importing forecast/ (statsforecast stays out of the API).

The caller's identity goes along as the forecaster reads it (forecast/main.py makes its
`Tenants` from the same settings): the caller's `X-API-Key` as sent, and the tenant the API
resolved in `X-Tenant-ID` (what a forecaster behind TRUSTED_TENANT_HEADER reads).
"""

import time
from collections.abc import Mapping

import httpx

from app.core.errors import Unavailable
from app.core.settings import Settings
from app.core.tenancy import Identity

# How long a readiness answer is reused, and how long asking may take.
READY_TTL_S = 5.0
READY_TIMEOUT_S = 1.0


class ForecasterUnavailable(Unavailable):
    """The forecaster does not answer, or fails."""


class ForecastClient:
    def __init__(self, http: httpx.AsyncClient, *, retry_after_s: int = 2) -> None:
        self.http = http
        self.retry_after_s = retry_after_s
        self._ready: tuple[float, bool] | None = None

    def _unavailable(self, why: str) -> ForecasterUnavailable:
        return ForecasterUnavailable(
            f"the forecaster {why}; is it running (make run starts it on :8001, FORECAST_URL "
            "names it)?",
            headers={"Retry-After": str(self.retry_after_s)},
        )

    async def predict(
        self, params: Mapping[str, str], identity: Identity, api_key: str | None
    ) -> httpx.Response:
        """The forecaster's answer to GET /predict, whatever its status."""
        headers = {"X-Tenant-ID": identity.tenant}
        if api_key:
            headers["X-API-Key"] = api_key
        try:
            return await self.http.get("/predict", params=dict(params), headers=headers)
        except httpx.TransportError as error:
            raise self._unavailable(f"does not answer ({error.__class__.__name__})") from None

    async def available(self) -> bool:
        """Whether the forecaster is ready (its /readyz), reused for READY_TTL_S."""
        now = time.monotonic()
        if self._ready is not None and now - self._ready[0] < READY_TTL_S:
            return self._ready[1]
        try:
            response = await self.http.get("/readyz", timeout=READY_TIMEOUT_S)
            ready = response.status_code == 200
        except httpx.TransportError:
            ready = False
        self._ready = (now, ready)
        return ready

    def refusal(self, status: int) -> ForecasterUnavailable:
        return self._unavailable(f"failed (it answered {status})")

    async def aclose(self) -> None:
        await self.http.aclose()


def create_forecast_client(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> ForecastClient:
    """The client of the lifespan; `transport` stands in for the network (tests)."""
    http = httpx.AsyncClient(
        base_url=settings.forecast_url, timeout=settings.forecast_timeout_s, transport=transport
    )
    return ForecastClient(http, retry_after_s=settings.retry_after_s)
