"""GET /v1/ui/config: public, it says how to sign in; the tenant's part only to a caller
the API knows (a valid key, or none needed)."""

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from app.core.settings import Settings
from app.main import create_app
from tests.auth.keys import Keys
from tests.fixtures.worker import RunWorker
from tests.forecasts.fake import FakeForecaster
from tests.helpers import post_batch
from tests.reads.test_reads import reading

KNOWN = ["kwhConsumedAc", "kwhDeliveredDc", "power_w"]


async def _client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            yield http


@pytest.fixture
def fake() -> FakeForecaster:
    return FakeForecaster()


@pytest.fixture
async def header_client(
    settings: Settings, fake: FakeForecaster, redis: Redis, db: asyncpg.Connection
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, forecast_transport=httpx.ASGITransport(app=fake.app))
    async for http in _client(app):
        yield http


async def test_a_tenant_gets_its_metrics_and_forecasting(
    header_client: httpx.AsyncClient, fake: FakeForecaster, run_worker: RunWorker
) -> None:
    header_client.headers["X-Tenant-ID"] = "ta"
    await post_batch(header_client, [reading("1", "d1", "2025-06-01T10:00:00Z", temp=1.0, cpu=2.0)])
    header_client.headers["X-Tenant-ID"] = "tb"
    await post_batch(header_client, [reading("2", "d1", "2025-06-01T10:00:00Z", other=1.0)])
    await run_worker()
    response = await header_client.get("/v1/ui/config", headers={"X-Tenant-ID": "ta"})
    assert response.status_code == 200, response.text
    assert response.json() == {
        # A trusted tenant header: the gateway in front signs callers in, not the browser.
        "auth": "disabled",
        "authenticated": True,
        "tenant": "ta",
        "metrics": sorted([*KNOWN, "cpu", "temp"]),
        "forecast": {"available": True},
        "max_points": 2000,
        "intervals": ["1m", "5m", "15m", "1h", "6h", "1d"],
    }
    other = (await header_client.get("/v1/ui/config", headers={"X-Tenant-ID": "tb"})).json()
    assert other["tenant"] == "tb" and other["metrics"] == sorted([*KNOWN, "other"])


async def test_forecasting_unavailable_when_the_forecaster_is_not_ready(
    settings: Settings, fake: FakeForecaster, redis: Redis, db: asyncpg.Connection
) -> None:
    fake.ready = False
    app = create_app(settings, forecast_transport=httpx.ASGITransport(app=fake.app))
    async for http in _client(app):
        assert (await http.get("/v1/ui/config")).json()["forecast"] == {"available": False}


async def test_no_forecaster_at_all_is_unavailable_not_an_error(
    settings: Settings, redis: Redis, db: asyncpg.Connection
) -> None:
    lonely = settings.model_copy(update={"forecast_url": "http://127.0.0.1:9"})
    async for http in _client(create_app(lonely)):
        response = await http.get("/v1/ui/config")
        assert response.status_code == 200
        assert response.json()["forecast"] == {"available": False}


async def test_auth_disabled_answers_without_a_key(
    settings: Settings, redis: Redis, db: asyncpg.Connection
) -> None:
    open_settings = settings.model_copy(
        update={"trusted_tenant_header": False, "auth_disabled": True,
                "forecast_url": "http://127.0.0.1:9"}
    )  # fmt: skip
    async for http in _client(create_app(open_settings)):
        body = (await http.get("/v1/ui/config")).json()
        assert body["auth"] == "disabled" and body["tenant"] == "default"
        assert body["authenticated"] is True and body["metrics"] == KNOWN


@pytest.fixture
async def key_client(
    settings: Settings, fake: FakeForecaster, keys: Keys, redis: Redis
) -> AsyncIterator[httpx.AsyncClient]:
    key_settings = settings.model_copy(
        update={"trusted_tenant_header": False, "api_key_pepper": "test-pepper"}
    )
    app = create_app(key_settings, forecast_transport=httpx.ASGITransport(app=fake.app))
    async for http in _client(app):
        yield http


@pytest.fixture
def keys(db: asyncpg.Connection, settings: Settings) -> Keys:
    return Keys(db, settings.model_copy(update={"api_key_pepper": "test-pepper"}))


async def test_with_keys_the_unauthenticated_call_reveals_only_how_to_sign_in(
    key_client: httpx.AsyncClient, keys: Keys, db: asyncpg.Connection, fake: FakeForecaster
) -> None:
    await db.execute("TRUNCATE api_keys")
    response = await key_client.get("/v1/ui/config", headers={"X-Tenant-ID": "ta"})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "auth": "key",
        "authenticated": False,
        "tenant": None,
        "metrics": None,
        "forecast": None,
        "max_points": 2000,
        "intervals": ["1m", "5m", "15m", "1h", "6h", "1d"],
    }
    assert fake.seen == []
    # A key that is sent must be a valid one: the sign-in form learns it is not.
    unknown = await key_client.get("/v1/ui/config", headers={"X-API-Key": "tk_nope"})
    assert unknown.status_code == 401 and unknown.json()["error"]["field"] == "X-API-Key"
    key = await keys.create("acme")
    known = (await key_client.get("/v1/ui/config", headers={"X-API-Key": key})).json()
    assert known["auth"] == "key" and known["authenticated"] is True
    assert known["tenant"] == "acme" and known["forecast"] == {"available": True}
