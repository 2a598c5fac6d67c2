"""Alert rules and their evaluation against the real PostgreSQL and Redis."""

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from app.alerts.rules import Rule, RuleSet
from app.core.settings import Settings
from app.main import create_app
from tests.helpers import event, post_batch, wait_for
from workers.alerts import Alerts
from workers.consumer import Worker
from workers.database import Database

BASE_TS_US = 1_748_772_000_000_000  # 2025-06-01T10:00:00Z, the minute 0 of tests.helpers.event


@pytest.fixture
async def alert_app(
    alert_settings: Settings, redis: Redis, db: asyncpg.Connection
) -> AsyncIterator[FastAPI]:
    application = create_app(alert_settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def api(alert_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=alert_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.fixture
async def alerts(alert_settings: Settings, redis: Redis) -> AsyncIterator[Alerts]:
    """A worker's alert side with its rules loaded; background tasks are up to each test."""
    worker_alerts = Alerts(alert_settings, redis, name="a1")
    yield worker_alerts
    await worker_alerts.database.close()


def canonical(
    device: str, second: int, tenant: str = "default", **metrics: float
) -> dict[str, Any]:
    return {
        "event_id": f"{device}-{second}",
        "tenant_id": tenant,
        "device_id": device,
        "site_id": "site-1",
        "ts": BASE_TS_US + second * 1_000_000,
        "metrics": metrics,
        "tags": [],
        "seq": second,
    }


async def add_rule(api: httpx.AsyncClient, **rule: Any) -> dict[str, Any]:
    response = await api.post("/v1/alerts", json=rule)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def transitions(redis: Redis, settings: Settings) -> list[tuple[str, str, str]]:
    """(state, device, time) of every alert in the stream, oldest first."""
    entries: Any = await redis.xrange(settings.alert_stream)
    out = []
    for _, fields in entries:
        alert = orjson.loads(fields[b"d"])
        out.append((alert["state"], alert["device_id"], alert["time"]))
    return out


async def run_alert_worker(settings: Settings, redis: Redis, alerts: Alerts, name: str) -> Worker:
    database = Database(settings)
    worker = Worker(settings, redis, database, name=name, burst=True, after_commit=alerts.evaluate)
    try:
        await worker.run()
    finally:
        await database.close()
    return worker


async def test_rule_crud_is_scoped_to_the_tenant(api: httpx.AsyncClient) -> None:
    rule = await add_rule(
        api, device_id="deviceA", metric="temp", op=">", threshold=32, clear_threshold=30
    )
    assert rule["device_id"] == "deviceA" and rule["op"] == ">" and rule["threshold"] == 32
    assert rule["clear_threshold"] == 30 and rule["for"] == 0 and rule["cooldown"] == 0
    site_rule = await add_rule(
        api, site_id="site-1", metric="hum", op="<=", threshold=10, cooldown="5m", **{"for": "90s"}
    )
    assert site_rule["for"] == 90 and site_rule["cooldown"] == 300

    listed = (await api.get("/v1/alerts")).json()
    assert [r["id"] for r in listed] == [rule["id"], site_rule["id"]]
    assert (await api.get(f"/v1/alerts/{rule['id']}")).json() == rule

    other = {"X-Tenant-ID": "other"}
    assert (await api.get("/v1/alerts", headers=other)).json() == []
    assert (await api.get(f"/v1/alerts/{rule['id']}", headers=other)).status_code == 404
    assert (await api.delete(f"/v1/alerts/{rule['id']}", headers=other)).status_code == 404

    assert (await api.delete(f"/v1/alerts/{rule['id']}")).status_code == 204
    assert (await api.get(f"/v1/alerts/{rule['id']}")).status_code == 404
    assert (await api.delete(f"/v1/alerts/{rule['id']}")).status_code == 404
    assert [r["id"] for r in (await api.get("/v1/alerts")).json()] == [site_rule["id"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"metric": "temp", "op": "=>", "threshold": 1}, "op"),
        ({"metric": "temp", "op": ">", "threshold": "hot"}, "threshold"),
        ({"metric": "", "op": ">", "threshold": 1}, "metric"),
        ({"device_id": "a", "site_id": "s", "metric": "t", "op": ">", "threshold": 1}, "site_id"),
        ({"metric": "t", "op": ">", "threshold": 1, "clear_threshold": 2}, "clear_threshold"),
        ({"metric": "t", "op": "<", "threshold": 1, "clear_threshold": 0}, "clear_threshold"),
        ({"metric": "t", "op": "==", "threshold": 1, "clear_threshold": 1}, "clear_threshold"),
        ({"metric": "t", "op": ">", "threshold": 1, "for": "soon"}, "for"),
        ({"metric": "t", "op": ">", "threshold": 1, "cooldown": -1}, "cooldown"),
        ({"metric": "t", "op": ">", "threshold": 1, "colour": "red"}, "colour"),
    ],
)
async def test_bad_rules_are_refused_naming_the_field(
    api: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await api.post("/v1/alerts", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


async def test_rule_changes_reach_a_worker_over_pubsub(
    api: httpx.AsyncClient, alerts: Alerts
) -> None:
    # The periodic sync is an hour away: only the published change can explain the update.
    async with alerts.running():
        await wait_for(lambda: _true(alerts.loaded.is_set()))
        rule = await add_rule(api, metric="temp", op=">", threshold=1)
        await wait_for(lambda: _true(alerts.rules.get("default", rule["id"]) is not None))
        await api.delete(f"/v1/alerts/{rule['id']}")
        await wait_for(lambda: _true(alerts.rules.get("default", rule["id"]) is None))


async def test_a_worker_that_missed_the_message_converges(
    api: httpx.AsyncClient, alert_settings: Settings, redis: Redis, db: asyncpg.Connection
) -> None:
    deaf = alert_settings.model_copy(
        update={"alert_rules_channel": "test:nobody-publishes-here", "alert_rule_sync_s": 0.05}
    )
    missed = Alerts(deaf, redis, name="deaf")
    async with missed.running():
        rule = await add_rule(api, device_id="d1", metric="temp", op=">", threshold=1)
        await wait_for(lambda: _true(missed.rules.get("default", rule["id"]) is not None))
        # Meanwhile the background writer records the transitions, sharing the connection
        # with the syncs.
        for second in range(20):
            await missed.evaluate([canonical("d1", second, temp=float(second % 2) * 5)])
        await wait_for(lambda: _count(db, "alert_history", 19))
        await api.delete(f"/v1/alerts/{rule['id']}")
        await wait_for(lambda: _true(missed.rules.get("default", rule["id"]) is None))
    assert missed.rules.versions["default"] == 2


async def _count(db: asyncpg.Connection, table: str, expected: int) -> bool:
    return bool(await db.fetchval(f"SELECT count(*) FROM {table}") == expected)


async def _true(value: bool) -> bool:
    return value


async def test_fires_once_and_resolves_once_with_hysteresis_and_for(
    api: httpx.AsyncClient,
    alerts: Alerts,
    alert_settings: Settings,
    redis: Redis,
    db: asyncpg.Connection,
) -> None:
    await add_rule(
        api, device_id="d1", metric="temp", op=">", threshold=32, clear_threshold=30, **{"for": 60}
    )
    await alerts.sync()
    readings = [33, 34, 35, 31, 33, 29, 28, 33, 31]  # one a minute
    await post_batch(api, [event(f"e{m}", minute=m, temp=float(v)) for m, v in enumerate(readings)])
    # Another device breaches too but no rule names it.
    await post_batch(api, [event("other", device="d2", minute=1, temp=99.0)])
    await run_alert_worker(alert_settings, redis, alerts, "w1")

    assert await transitions(redis, alert_settings) == [
        ("pending", "d1", "2025-06-01 10:00:00"),  # 33 > 32, must hold 60 s
        ("firing", "d1", "2025-06-01 10:01:00"),  # held 60 s; 35 and 33 in the band repeat nothing
        ("resolved", "d1", "2025-06-01 10:05:00"),  # 31 is in the band; 29 clears
        ("pending", "d1", "2025-06-01 10:07:00"),
        ("cancelled", "d1", "2025-06-01 10:08:00"),  # did not hold 60 s
    ]

    # A replayed batch (a redelivery after a crash) notifies nothing again.
    replay = [canonical("d1", 60 * m, temp=float(v)) for m, v in enumerate(readings)]
    await alerts.evaluate(replay)
    assert len(await transitions(redis, alert_settings)) == 5

    assert await alerts.record_history() == 5
    assert await alerts.record_history() == 0
    assert await db.fetchval("SELECT count(*) FROM alert_history") == 5

    history = (await api.get("/v1/alerts/history", params={"device_id": "d1"})).json()["alerts"]
    assert [h["state"] for h in history] == [
        "pending",
        "firing",
        "resolved",
        "pending",
        "cancelled",
    ]
    firing = history[1]
    assert firing["metrics"] == {"temp": 34.0} and firing["metric"] == "temp"
    assert firing["time"] == "2025-06-01 10:01:00" and firing["site_id"] == "site-1"
    assert firing["id"].count("-") == 1
    window = {"from_time": "2025-06-01T10:01:00Z", "to_time": "2025-06-01T10:07:00Z"}
    windowed = (await api.get("/v1/alerts/history", params=window)).json()["alerts"]
    assert [h["state"] for h in windowed] == ["firing", "resolved"]
    bad = await api.get("/v1/alerts/history", params={"from_time": "yesterday"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "from_time"
    other = await api.get("/v1/alerts/history", headers={"X-Tenant-ID": "other"})
    assert other.json()["alerts"] == []


async def test_cooldown_holds_a_refiring_alert_pending(
    api: httpx.AsyncClient, alerts: Alerts, alert_settings: Settings, redis: Redis
) -> None:
    await add_rule(api, site_id="site-1", metric="temp", op=">=", threshold=10, cooldown="10m")
    await alerts.sync()
    values = {0: 10, 1: 5, 2: 12, 11: 12}
    await alerts.evaluate([canonical("d1", 60 * m, temp=float(v)) for m, v in values.items()])
    assert [(s, t[-8:]) for s, _, t in await transitions(redis, alert_settings)] == [
        ("firing", "10:00:00"),
        ("resolved", "10:01:00"),
        ("pending", "10:02:00"),  # breached within the cooldown
        ("firing", "10:11:00"),  # the cooldown has passed
    ]


async def test_late_events_do_not_move_the_state_back(
    api: httpx.AsyncClient, alerts: Alerts, alert_settings: Settings, redis: Redis
) -> None:
    await add_rule(api, metric="temp", op=">", threshold=32)
    await alerts.sync()
    await alerts.evaluate([canonical("d1", 120, temp=40.0)])
    # Older than what the state has seen: evaluated by event time, it is history already.
    await alerts.evaluate([canonical("d1", 60, temp=20.0)])
    await alerts.evaluate([canonical("d1", 180, temp=20.0), canonical("d2", 0, temp=50.0)])
    assert await transitions(redis, alert_settings) == [
        ("firing", "d1", "2025-06-01 10:02:00"),
        ("resolved", "d1", "2025-06-01 10:03:00"),
        ("firing", "d2", "2025-06-01 10:00:00"),
    ]


async def test_two_racing_workers_notify_once(
    api: httpx.AsyncClient, alert_settings: Settings, redis: Redis
) -> None:
    await add_rule(api, device_id="d1", metric="temp", op=">", threshold=32)
    # Two workers, each with its own rule cache and its own Redis connections.
    second_redis = Redis.from_url(alert_settings.redis_url)
    first, second = (
        Alerts(alert_settings, redis, name="a1"),
        Alerts(alert_settings, second_redis, name="a2"),
    )
    try:
        await asyncio.gather(first.sync(), second.sync())
        # The same breaching event reaches both at once (say, a redelivery racing the original).
        same = [canonical("d1", 0, temp=40.0)]
        await asyncio.gather(first.evaluate(same), second.evaluate(same))
        assert [s for s, _, _ in await transitions(redis, alert_settings)] == ["firing"]

        # Then forty breaching events of the device, one stream entry each, shared out
        # between two workers consuming the same group at once.
        for minute in range(1, 41):
            await post_batch(api, [event(f"r{minute}", minute=minute % 60, temp=40.0)])
        one_each = alert_settings.model_copy(update={"batch_entries": 1})
        workers = await asyncio.gather(
            run_alert_worker(one_each, redis, first, "w1"),
            run_alert_worker(one_each, second_redis, second, "w2"),
        )
        assert sum(w.stored for w in workers) == 40
        assert all(w.stored for w in workers), "both workers took part"
        assert [s for s, _, _ in await transitions(redis, alert_settings)] == ["firing"]
    finally:
        await first.database.close()
        await second.database.close()
        await second_redis.aclose()


def test_a_rule_set_keeps_the_newest_version_of_each_rule() -> None:
    rules = RuleSet()
    created = Rule("t", 1, "temp", ">", 1.0, version=5)
    # The delete is seen first (say, from the sync); the create's message comes late.
    rules.apply([dataclasses.replace(created, version=6, deleted=True)])
    rules.apply([created])
    assert rules.get("t", 1) is None and rules.for_tenant("t") is None
    site = Rule("t", 2, "temp", "<", 0.0, site_id="s", version=7)
    device = Rule("t", 3, "hum", ">", 90.0, device_id="d", version=8)
    everyone = Rule("t", 4, "temp", ">", 50.0, version=9)
    rules.apply([site, device, everyone, site])
    scoped = rules.for_tenant("t")
    assert scoped is not None and len(rules) == 3
    assert scoped.by_site == {"s": [site]} and scoped.by_device == {"d": [device]}
    assert scoped.everyone == [everyone]
