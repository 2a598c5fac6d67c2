"""GET /v1/forecast against a fake forecaster (an ASGI app passed in as the transport) and
against none at all."""

import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from app.core.settings import Settings
from app.main import create_app
from tests.conftest import ROOT
from tests.forecasts.fake import PREDICTION, FakeForecaster


@pytest.fixture
def fake() -> FakeForecaster:
    return FakeForecaster()


async def _client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            yield http


@pytest.fixture
async def proxied(
    settings: Settings, fake: FakeForecaster, redis: Redis, db: asyncpg.Connection
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, forecast_transport=httpx.ASGITransport(app=fake.app))
    async for http in _client(app):
        yield http


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def unreachable(
    settings: Settings, redis: Redis, db: asyncpg.Connection
) -> AsyncIterator[httpx.AsyncClient]:
    # A real client to a port nothing listens on.
    lonely = settings.model_copy(update={"forecast_url": f"http://127.0.0.1:{_free_port()}"})
    async for http in _client(create_app(lonely)):
        yield http


async def test_the_forecasters_answer_is_passed_on_unchanged(
    proxied: httpx.AsyncClient, fake: FakeForecaster
) -> None:
    response = await proxied.get(
        "/v1/forecast?device_id=d1&metric=power_w&horizon=1h", headers={"X-Tenant-ID": "ta"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == PREDICTION
    params, headers = fake.seen[-1]
    assert params == {"device_id": "d1", "metric": "power_w", "horizon": "1h"}
    # The tenant the API resolved goes along as the forecaster reads it.
    assert headers["x-tenant-id"] == "ta" and "x-api-key" not in headers


async def test_site_step_and_version_are_forwarded(
    proxied: httpx.AsyncClient, fake: FakeForecaster
) -> None:
    response = await proxied.get("/v1/forecast?site_id=s1&step=15m&version=2")
    assert response.status_code == 200, response.text
    assert fake.seen[-1][0] == {"site_id": "s1", "step": "15m", "version": "2"}
    assert fake.seen[-1][1]["x-tenant-id"] == "default"


@pytest.mark.parametrize(
    ("device", "status", "code"),
    [("missing", 404, "not_found"), ("conflict", 409, "conflict"), ("invalid", 422, "invalid"),
     ("busy", 503, "unavailable")],
)  # fmt: skip
async def test_refusals_keep_their_status_and_body(
    proxied: httpx.AsyncClient, device: str, status: int, code: str
) -> None:
    response = await proxied.get(f"/v1/forecast?device_id={device}")
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    if device == "busy":
        assert response.headers["retry-after"] == "7"


async def test_a_failing_forecaster_is_a_503(proxied: httpx.AsyncClient) -> None:
    response = await proxied.get("/v1/forecast?device_id=broken")
    assert response.status_code == 503
    assert "answered 500" in response.json()["error"]["message"]


async def test_parameters_are_checked_before_the_forecaster_is_asked(
    proxied: httpx.AsyncClient, fake: FakeForecaster
) -> None:
    response = await proxied.get("/v1/forecast?device_id=&version=0")
    assert response.status_code == 422
    assert fake.seen == []


async def test_an_unreachable_forecaster_is_a_503_saying_so(unreachable: httpx.AsyncClient) -> None:
    response = await unreachable.get("/v1/forecast?device_id=d1")
    assert response.status_code == 503
    assert response.headers["retry-after"]
    body: dict[str, Any] = response.json()
    assert body["error"]["code"] == "unavailable"
    assert "does not answer (ConnectError)" in body["error"]["message"]
    assert "FORECAST_URL" in body["error"]["message"]


def test_the_api_never_loads_the_forecaster() -> None:
    code = ("import sys, app.main; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('forecast', 'statsforecast')))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=120)  # fmt: skip
    assert out.stdout.strip() == "[]", out.stdout
