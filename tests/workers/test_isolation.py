"""One poison piece cannot stop the fleet: the rollups and the alert pass isolate it.

The edge refuses values the rollups cannot take (tests/ingest/test_hostile.py), so the
poison here is written straight into storage, as an older API could have stored it.
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy.engine import make_url

from app.alerts.state import AlertStream
from app.core.settings import Settings, dsn
from app.main import create_app
from scripts.schema import recreate
from tests.helpers import event, post_batch, wait_for
from tests.reads.test_reads import reset_rollups
from workers.alerts import Alerts
from workers.consumer import Worker
from workers.database import Database
from workers.refresher import Refresher

MINUTE = datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
ROWS = [
    # (tenant, device, site, minute offset, value): the poison shares its minute with others.
    ("iso-a", "poison", "s1", 0, 5e-324),
    ("iso-a", "good", "s1", 0, 10.0),
    ("iso-b", "other", "s2", 0, 20.0),
    ("iso-a", "good", "s1", 1, 30.0),
    ("iso-b", "other", "s2", 2, 40.0),
]


async def write_rows(conn: asyncpg.Connection) -> None:
    await conn.executemany(
        "INSERT INTO readings (tenant_id, device_id, metric, ts, site_id, value, seq)"
        " VALUES ($1, $2, 'power_w', $3, $4, $5, 1)",
        [(t, d, MINUTE + timedelta(minutes=m), s, v) for t, d, s, m, v in ROWS],
    )
    await conn.execute(
        "INSERT INTO rollup_dirty (minute) SELECT DISTINCT date_trunc('minute', ts) FROM readings"
    )


def counter(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


@pytest.fixture
def clock_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"refresh_lag_s": 0, "cache_ttl_recent_s": 1e-6})


async def aggregate(client: httpx.AsyncClient, tenant: str, scope: str, key: str) -> dict[str, Any]:
    response = await client.get(
        f"/v1/metrics/aggregate?metric=power_w&{scope}={key}"
        "&from_time=2025-06-01T09:00:00Z&to_time=2025-06-01T11:00:00Z&interval=1m",
        headers={"X-Tenant-ID": tenant},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def check_isolated(
    settings: Settings,
    conn: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
    *,
    whole_minute: bool,
) -> None:
    before = counter("telemetry_rollup_quarantined_total")
    refresher = Refresher(settings, clock=lambda: MINUTE + timedelta(hours=1))
    try:
        with caplog.at_level(logging.ERROR, logger="workers.refresher"):
            result = await refresher.round()
        assert result.led and result.minutes == 3
        # The watermark moved past the poison: no tenant's rollups are stuck behind it.
        assert result.watermark == MINUTE + timedelta(hours=1)
        again = await refresher.round()
        assert again.minutes == 0
    finally:
        await refresher.close()
    assert counter("telemetry_rollup_quarantined_total") == before + 1
    [line] = [r.getMessage() for r in caplog.records if "quarantined" in r.getMessage()]
    for part in ("'iso-a'", "'poison'", "'power_w'", MINUTE.isoformat()):
        assert part in line
    rows = await conn.fetch(
        "SELECT tenant_id, device_id, metric, minute, whole_bucket FROM rollup_quarantine"
    )
    assert [tuple(r) for r in rows] == [("iso-a", "poison", "power_w", MINUTE, whole_minute)]

    application: FastAPI = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            poison = await aggregate(client, "iso-a", "device_id", "poison")
            good = await aggregate(client, "iso-a", "device_id", "good")
            other = await aggregate(client, "iso-b", "device_id", "other")
            site = await aggregate(client, "iso-a", "site_id", "s1")
    assert [q["device_id"] for q in poison["quarantined"]] == ["poison"]
    assert site["quarantined"][0]["minute"] == "2025-06-01T10:00:00Z"
    if whole_minute:
        # A continuous aggregate refreshes whole buckets: the poison's minute stays
        # unrefreshed for its neighbours too, and their answers say so.
        assert [b["sum"] for b in good["buckets"]] == [30.0]
        assert [b["sum"] for b in other["buckets"]] == [40.0]
        assert good["quarantined"][0]["whole_minute"] and other["quarantined"]
    else:
        assert [b["sum"] for b in good["buckets"]] == [10.0, 30.0]
        assert [b["sum"] for b in other["buckets"]] == [20.0, 40.0]
        assert "quarantined" not in good and "quarantined" not in other
    for body in (good, other, poison, site):
        for bucket in body["buckets"]:
            assert bucket["min"] <= bucket["avg"] <= bucket["max"]


async def test_a_poison_minute_is_quarantined_and_the_rollups_move_on(
    clock_settings: Settings, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    await reset_rollups(db)
    await db.execute("TRUNCATE rollup_dirty, rollup_quarantine")
    await write_rows(db)
    try:
        await check_isolated(clock_settings, db, caplog, whole_minute=False)
    finally:
        await db.execute("TRUNCATE rollup_quarantine")
    plain = await db.fetch("SELECT device_id, minute FROM readings_1m_mat ORDER BY 1, 2")
    assert {r["device_id"] for r in plain} == {"good", "other"}


@pytest.fixture
async def ts_url(timescale_url: str) -> str:
    """A TimescaleDB database of its own: refreshing its continuous aggregates moves their
    watermark for good, which the other TimescaleDB tests must not inherit."""
    url = make_url(dsn(timescale_url)).set(database="telemetry_ts_isolation")
    text = url.render_as_string(hide_password=False)
    await asyncio.to_thread(recreate, text)
    return text


@pytest.fixture
async def ts_conn(ts_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn(ts_url))
    yield conn
    await conn.close()


@pytest.mark.timescale
async def test_a_poison_minute_is_quarantined_on_timescaledb(
    clock_settings: Settings,
    ts_url: str,
    ts_conn: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await write_rows(ts_conn)
    settings = clock_settings.model_copy(update={"database_url": ts_url})
    await check_isolated(settings, ts_conn, caplog, whole_minute=True)


class RefusingStream(AlertStream):
    """The alert script refuses every call that touches one device, as Lua would refuse a
    value it cannot handle."""

    async def transition(self, keys: list[str], args: list[Any]) -> list[tuple[str, str]]:
        if any("refused" in key for key in keys):
            raise ResponseError("ERR user_script:1: refused")
        return await super().transition(keys, args)


async def test_a_refused_alert_evaluation_is_skipped_and_the_batch_is_stored(
    alert_settings: Settings,
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    redis: Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alerts = Alerts(alert_settings, redis, name="w1")
    alerts.stream = RefusingStream(
        redis,
        alert_settings.alert_stream,
        alert_settings.alert_channel,
        alert_settings.alert_stream_maxlen,
        alert_settings.alert_state_ttl_s,
    )
    response = await client.post("/v1/alerts", json={"metric": "temp", "op": ">", "threshold": 30})
    assert response.status_code == 201
    await alerts.sync()
    await post_batch(
        client,
        [
            event("r1", device="refused", minute=1, temp=40.0),
            event("k1", device="kept", minute=1, temp=40.0),
        ],
    )
    before = counter("telemetry_alert_eval_failures_total")
    database = Database(alert_settings)
    worker = Worker(
        alert_settings, redis, database, name="w1", burst=True, after_commit=alerts.evaluate
    )
    try:
        with caplog.at_level(logging.ERROR, logger="workers.alerts"):
            await worker.run()
    finally:
        await database.close()
        await alerts.database.close()
    assert worker.stored == 2
    assert (await redis.xpending(alert_settings.stream, alert_settings.group))["pending"] == 0
    assert counter("telemetry_alert_eval_failures_total") == before + 1
    assert any("'refused'" in r.getMessage() for r in caplog.records)

    async def kept_fired() -> bool:
        entries: Any = await redis.xrange(alert_settings.alert_stream)
        return any(b'"kept"' in fields[b"d"] and b"firing" in fields[b"d"] for _, fields in entries)

    await wait_for(kept_fired)
