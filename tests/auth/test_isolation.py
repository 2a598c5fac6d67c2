"""Tenants are isolated on every route: built from the route table, so a new route without a
case here fails this test.

Tenant A writes events, a rule, an alert, a generator profile and a model, each through its
own key; tenant B then tries every route: it can neither read A's data, nor change it, nor
be alerted about it, and no cached answer of A's is served to B.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from redis.asyncio import Redis

from app.core.settings import Settings
from app.main import create_app as create_api
from forecast.main import create_app as create_forecaster
from forecast.pool import TrainingPool
from tests.auth.keys import Keys
from tests.fixtures.worker import RunWorker
from tests.forecast.service_fixtures import T0, daily, iso, readings
from tests.helpers import wait_for
from tests.reads.test_reads import refresh
from workers.alerts import Alerts
from workers.consumer import Worker
from workers.database import Database

PUBLIC = {
    ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/openapi.json"),
    ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"), ("GET", "/redoc"),
    # Says how to sign in to anyone; the tenant's part only for a valid key (tests/ui/).
    ("GET", "/v1/ui/config"),
}  # fmt: skip
HOUR = timedelta(hours=1)
HOURS = 72

Case = Callable[["World"], Awaitable[None]]
CASES: dict[tuple[str, str], Case] = {}


def case(method: str, path: str) -> Callable[[Case], Case]:
    def register(check: Case) -> Case:
        CASES[(method, path)] = check
        return check

    return register


class World:
    """Both tenants' clients on the API and the forecaster, and what A made."""

    def __init__(self, a: httpx.AsyncClient, b: httpx.AsyncClient, fa: httpx.AsyncClient,
                 fb: httpx.AsyncClient, db: asyncpg.Connection, redis: Redis,
                 settings: Settings, run_worker: RunWorker) -> None:  # fmt: skip
        self.a, self.b, self.fa, self.fb = a, b, fa, fb
        self.db, self.redis, self.settings, self.run_worker = db, redis, settings, run_worker
        self.rule_id = 0
        self.alert_id = ""
        self.api: FastAPI
        self.key_a = self.key_b = ""

    def window(self) -> str:
        return f"from_time={iso(T0)}&to_time={iso(T0 + HOURS * HOUR)}"

    async def stored(self, tenant: str) -> int:
        count: int = await self.db.fetchval(
            "SELECT count(*) FROM events WHERE tenant_id = $1", tenant
        )
        return count


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


@case("POST", "/v1/events")
async def _single(w: World) -> None:
    before = await w.stored("ta")
    # A's event id is no duplicate for B: dedupe memory is per tenant.
    body = readings("dA", [1.0], start=T0)[0]
    assert ok(await w.b.post("/v1/events", json=body), 202)["status"] == "accepted"
    refused = await w.b.post("/v1/events", json={**body, "event_id": "x", "tenant_id": "ta"})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "tenant_id"
    await w.run_worker()
    assert await w.stored("ta") == before
    row = await w.db.fetchrow(
        "SELECT tenant_id FROM events WHERE event_id = $1 AND tenant_id = 'tb'", body["event_id"]
    )
    assert row is not None


@case("POST", "/v1/events/batch")
async def _batch(w: World) -> None:
    before = await w.stored("ta")
    body = readings("dA", [5.0, 6.0], start=T0 + 2 * HOUR)
    statuses = [
        r["status"] for r in ok(await w.b.post("/v1/events/batch", json=body), 202)["results"]
    ]
    assert statuses == ["accepted", "accepted"]
    await w.run_worker()
    assert await w.stored("ta") == before
    a_value = await w.db.fetchval(
        "SELECT value FROM readings WHERE tenant_id = 'ta' AND ts = $1", T0 + 2 * HOUR
    )
    assert a_value not in (5.0, None)


@case("GET", "/v1/devices/{device_id}/events")
async def _device_events(w: World) -> None:
    assert ok(await w.a.get(f"/v1/devices/dA/events?{w.window()}&limit=5"))["events"]
    assert all(e["metrics"]["power_w"] in (1.0, 5.0, 6.0)
               for e in ok(await w.b.get(f"/v1/devices/dA/events?{w.window()}"))["events"])  # fmt: skip


@case("GET", "/sensors/{sensor_id}/recent")
async def _recent(w: World) -> None:
    assert len(ok(await w.a.get("/sensors/dA/recent?limit=10"))["events"]) == 10
    assert len(ok(await w.b.get("/sensors/dA/recent?limit=10"))["events"]) <= 3


@case("GET", "/v1/events")
async def _listing(w: World) -> None:
    events = ok(await w.b.get("/v1/events?size=1000"))["events"]
    assert len(events) <= 3


@case("GET", "/v1/devices/{device_id}/status")
async def _status(w: World) -> None:
    a = ok(await w.a.get("/v1/devices/dA/status"))
    b = ok(await w.b.get("/v1/devices/dA/status"))
    assert a["last_seen"] != b["last_seen"]


@case("GET", "/v1/search")
async def _search(w: World) -> None:
    assert ok(await w.a.get("/v1/search?tag=secret-a"))["events"]
    assert ok(await w.b.get("/v1/search?tag=secret-a"))["events"] == []


async def _cached_then(w: World, url: str, key: str) -> None:
    # A asks first, so its answer is in the cache when B asks the very same question.
    assert ok(await w.a.get(url))[key]
    answer = ok(await w.b.get(url))
    assert all(item.get("count", 1) <= 3 for item in answer[key]) if answer[key] else True
    assert answer[key] != ok(await w.a.get(url))[key]


@case("GET", "/v1/metrics/aggregate")
async def _aggregate(w: World) -> None:
    url = f"/v1/metrics/aggregate?metric=power_w&device_id=dA&{w.window()}&interval=1d"
    await _cached_then(w, url, "buckets")


@case("GET", "/sites/{site_id}/agg")
async def _site(w: World) -> None:
    url = f"/sites/sA/agg?window=1d&from={iso(T0)}&to={iso(T0 + HOURS * HOUR)}"
    answer_a = ok(await w.a.get(url))
    assert answer_a["windows"]
    assert ok(await w.b.get(url))["windows"] == []


@case("GET", "/v1/analytics/efficiency")
async def _efficiency(w: World) -> None:
    url = "/v1/analytics/efficiency?site_id=sA&window=2d"
    assert ok(await w.a.get(url))["status"] != "NO_DATA"
    assert ok(await w.b.get(url))["status"] == "NO_DATA"


@case("GET", "/v1/devices")
async def _devices(w: World) -> None:
    own = {d["device_id"]: d for d in ok(await w.a.get("/v1/devices?q=DA"))["devices"]}
    assert own["dA"]["site_id"] == "sA" and "kwhDeliveredDc" in own["dA"]["metrics"]
    # B's own "dA" (its writes above), with B's site and values only.
    other = ok(await w.b.get("/v1/devices?q=DA"))["devices"]
    assert [(d["device_id"], d["site_id"]) for d in other] == [("dA", "s1")]
    assert set(other[0]["metrics"]) == {"power_w"}


@case("GET", "/v1/sites")
async def _sites(w: World) -> None:
    assert ok(await w.a.get("/v1/sites?q=sa"))["sites"] == [{"site_id": "sA", "devices": 1}]
    assert ok(await w.b.get("/v1/sites?q=sa"))["sites"] == []


@case("GET", "/v1/pipeline")
async def _pipeline(w: World) -> None:
    # Fleet-wide by design (one stream, group and rollup for all): nothing of A's in it.
    answer = await w.b.get("/v1/pipeline")
    assert ok(answer)["stream"]["name"] == w.settings.stream
    assert not any(secret in answer.text for secret in ('"ta"', "sA", "dA", "secret-a"))


@case("GET", "/v1/forecast")
async def _forecast(w: World) -> None:
    # The API passes each caller's key on to the forecaster, which answers for its tenant.
    assert ok(await w.a.get("/v1/forecast?device_id=dA&horizon=3h"))["points"]
    refused = await w.b.get("/v1/forecast?device_id=dA&horizon=3h")
    assert refused.status_code == 404, refused.text


@case("POST", "/v1/alerts")
async def _create_rule(w: World) -> None:
    made = ok(
        await w.b.post("/v1/alerts", json={"metric": "power_w", "op": ">", "threshold": 1}), 201
    )
    assert made["id"] not in [r["id"] for r in ok(await w.a.get("/v1/alerts"))]


@case("GET", "/v1/alerts")
async def _list_rules(w: World) -> None:
    assert w.rule_id not in [r["id"] for r in ok(await w.b.get("/v1/alerts"))]


@case("GET", "/v1/alerts/{rule_id}")
async def _get_rule(w: World) -> None:
    assert (await w.b.get(f"/v1/alerts/{w.rule_id}")).status_code == 404


@case("DELETE", "/v1/alerts/{rule_id}")
async def _delete_rule(w: World) -> None:
    assert (await w.b.delete(f"/v1/alerts/{w.rule_id}")).status_code == 404
    assert ok(await w.a.get(f"/v1/alerts/{w.rule_id}"))["id"] == w.rule_id


@case("GET", "/v1/alerts/history")
async def _history(w: World) -> None:
    assert w.alert_id in [a["id"] for a in ok(await w.a.get("/v1/alerts/history"))["alerts"]]
    assert ok(await w.b.get("/v1/alerts/history"))["alerts"] == []


@contextlib.asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """The running app under uvicorn on a free port (a stream needs a real server: the ASGI
    test transport waits for the whole body, and this one never ends)."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        await wait_for(lambda: _done(server.started or task.done()))
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


async def _done(value: bool) -> bool:
    return value


async def _frames(base: str, key: str, resume: str, seconds: float) -> list[str]:
    """What one client's stream sends within `seconds`, resumed after `resume`."""
    seen: list[str] = []
    headers = {"X-API-Key": key, "Last-Event-ID": resume}
    async with (
        httpx.AsyncClient(base_url=base, timeout=10) as http,
        http.stream("GET", "/v1/alerts/stream", headers=headers) as sse,
    ):
        assert sse.status_code == 200
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                async for line in sse.aiter_lines():
                    seen.append(line)
                    if line.startswith("data:"):
                        break
    return seen


@case("GET", "/v1/alerts/stream")
async def _stream(w: World) -> None:
    # Both resume from A's first alert (a real, kept id), so the replay holds A's second one:
    # A gets it, B does not, neither from the replay nor live.
    async with served(w.api) as base:
        own = await _frames(base, w.key_a, w.alert_id, 5.0)
        other = await _frames(base, w.key_b, w.alert_id, 1.0)
    assert any(line.startswith("data:") and "resolved" in line for line in own), own
    assert not any(line.startswith(("id:", "data:")) for line in other), other
    assert other and other[0] == ": connected"


@case("GET", "/v1/generator/config")
async def _config_get(w: World) -> None:
    assert ok(await w.a.get("/v1/generator/config"))["rate"] == 5.0
    assert ok(await w.b.get("/v1/generator/config"))["rate"] == 1000.0


@case("PUT", "/v1/generator/config")
async def _config_put(w: World) -> None:
    ok(await w.b.put("/v1/generator/config", json={"rate": 7}))
    assert ok(await w.a.get("/v1/generator/config"))["rate"] == 5.0


@case("POST", "/train")
async def _train(w: World) -> None:
    window = f"from={iso(T0)}&to={iso(T0 + HOURS * HOUR)}"
    refused = await w.fb.post(f"/train?sensor_id=dA&step=1h&{window}")
    # B sees only its own three readings of a "dA" (not rolled up yet: none at all).
    assert refused.status_code in (404, 422), refused.text
    assert refused.json()["error"]["code"] in ("not_found", "too_little_data")


@case("GET", "/predict")
async def _predict(w: World) -> None:
    assert ok(await w.fa.get("/predict?sensor_id=dA&horizon=3h"))["points"]
    assert (await w.fb.get("/predict?sensor_id=dA&horizon=3h")).status_code == 404


@case("GET", "/models")
async def _models(w: World) -> None:
    assert ok(await w.fa.get("/models?sensor_id=dA"))["models"]
    assert ok(await w.fb.get("/models?sensor_id=dA"))["models"] == []


def routes(*apps: FastAPI) -> set[tuple[str, str]]:
    """Every route the apps publish (their OpenAPI documents list them all)."""
    found = set()
    for app in apps:
        for path, operations in app.openapi()["paths"].items():
            found |= {(method.upper(), path) for method in operations}
    return found - PUBLIC


@pytest.fixture
async def apps(
    key_settings: Settings, training_pool: TrainingPool, redis: Redis, db: asyncpg.Connection
) -> AsyncIterator[tuple[FastAPI, FastAPI]]:
    await db.execute("TRUNCATE forecast_models, api_keys")
    forecaster = create_forecaster(key_settings, training=training_pool)
    api = create_api(key_settings, forecast_transport=httpx.ASGITransport(app=forecaster))
    async with api.router.lifespan_context(api), forecaster.router.lifespan_context(forecaster):
        yield api, forecaster


async def test_every_route_keeps_tenants_apart(
    apps: tuple[FastAPI, FastAPI],
    keys: Keys,
    db: asyncpg.Connection,
    redis: Redis,
    key_settings: Settings,
    run_worker: RunWorker,
) -> None:
    api, forecaster = apps
    assert routes(api, forecaster) == set(CASES), "every tenant route needs an isolation case"
    key_a, key_b = await keys.create("ta"), await keys.create("tb")

    def client(app: FastAPI, key: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                                 headers={"X-API-Key": key}, timeout=30)  # fmt: skip

    async with (
        client(api, key_a) as a, client(api, key_b) as b,
        client(forecaster, key_a) as fa, client(forecaster, key_b) as fb,
    ):  # fmt: skip
        world = World(a, b, fa, fb, db, redis, key_settings, run_worker)
        world.api, world.key_a, world.key_b = api, key_a, key_b
        # A's data: three days of hourly power with tags, its dc/ac meters, a rule, an alert.
        events = readings("dA", daily(HOURS, per_day=24, level=100), step=HOUR, site="sA")
        for event in events:
            event["tags"] = ["secret-a"]
        ok(await a.post("/v1/events/batch", json=events), 202)
        rule = ok(
            await a.post(
                "/v1/alerts", json={"device_id": "dA", "metric": "temp", "op": ">", "threshold": 30}
            ),
            201,
        )
        world.rule_id = rule["id"]
        ok(await a.put("/v1/generator/config", json={"rate": 5}))
        alerts = Alerts(key_settings, redis, name="iso")
        await alerts.sync()
        breach = {**readings("dA", [1.0], start=T0 + (HOURS + 1) * HOUR, site="sA")[0],
                  "metrics": {"temp": 40.0}}  # fmt: skip
        clear = {**breach, "event_id": "clear", "ts": iso(T0 + (HOURS + 2) * HOUR),
                 "metrics": {"temp": 20.0}}  # fmt: skip
        recent = {"event_id": "meters", "device_id": "dA", "site_id": "sA",
                  "ts": iso(datetime.now(UTC) - HOUR),
                  "metrics": {"kwhDeliveredDc": 9.0, "kwhConsumedAc": 10.0}}  # fmt: skip
        for event in (breach, clear, recent):
            ok(await a.post("/v1/events", json=event), 202)
        database = Database(key_settings)
        try:
            worker = Worker(key_settings, redis, database, name="iso", burst=True,
                            after_commit=alerts.evaluate)  # fmt: skip
            await worker.run()
            await alerts.record_history()
        finally:
            await database.close()
            await alerts.database.close()
        await refresh(key_settings)
        history = ok(await a.get("/v1/alerts/history"))["alerts"]
        assert [h["state"] for h in history] == ["firing", "resolved"]
        world.alert_id = history[0]["id"]
        window = f"from={iso(T0)}&to={iso(T0 + HOURS * HOUR)}"
        ok(await fa.post(f"/train?sensor_id=dA&step=1h&{window}"), 201)
        # B writes first (its own data shows up beside A's nowhere), then tries the rest.
        writes = [("POST", "/v1/events"), ("POST", "/v1/events/batch")]
        for key in writes + sorted(set(CASES) - set(writes)):
            await CASES[key](world)


async def test_every_route_but_health_and_metrics_asks_for_a_key(
    apps: tuple[FastAPI, FastAPI],
) -> None:
    for app in apps:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as http:
            for method, path in sorted(routes(app)):
                url = path.replace("{device_id}", "d").replace("{sensor_id}", "d")
                url = url.replace("{site_id}", "s").replace("{rule_id}", "1")
                response = await http.request(method, url, json={})
                assert response.status_code == 401, (method, path, response.text)
                assert response.json()["error"]["field"] == "X-API-Key"
            for public in ("/healthz", "/metrics"):
                assert (await http.get(public)).status_code == 200
