"""The read API against data written through the ingest path (API → stream → worker)."""

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from app.core.settings import Settings
from app.main import create_app
from tests.fixtures.worker import RunWorker
from tests.helpers import SEED_BATCH, SEED_SINGLE, post_batch
from workers.refresher import Refresher

ROLLUP_TABLES = (
    "rollup_dirty, rollup_refresh_log, readings_1m_mat, readings_1h_mat, readings_1d_mat,"
    " site_readings_1m_mat, site_readings_1h_mat, site_readings_1d_mat"
)


async def reset_rollups(conn: asyncpg.Connection) -> None:
    """Empty the plain rollups and forget the watermark: everything reads as realtime."""
    await conn.execute(f"TRUNCATE {ROLLUP_TABLES}")
    await conn.execute("UPDATE rollup_state SET w1m = NULL, refreshed_at = NULL")


def reading(
    event_id: str,
    device: str,
    ts: str,
    site: str | None = "site-1",
    tags: list[str] | None = None,
    **metrics: float,
) -> dict[str, Any]:
    body: dict[str, Any] = {"event_id": event_id, "device_id": device, "ts": ts, "metrics": metrics}
    if site is not None:
        body["site_id"] = site
    if tags is not None:
        body["tags"] = tags
    return body


@pytest.fixture
def read_settings(settings: Settings) -> Settings:
    # Sync with the refresher's log on every request, so tests see evictions at once.
    return settings.model_copy(update={"cache_sync_interval_s": 1e-6})


@pytest.fixture
async def api(
    read_settings: Settings, redis: Redis, db: asyncpg.Connection
) -> AsyncIterator[httpx.AsyncClient]:
    await reset_rollups(db)
    application: FastAPI = create_app(read_settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def refresh(settings: Settings) -> None:
    refresher = Refresher(settings)
    try:
        result = await refresher.round()
        assert result.led
    finally:
        await refresher.close()


def error_field(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    field: str = response.json()["error"]["field"]
    return field


async def test_seed_004_walkthrough_reads_work_verbatim(
    api: httpx.AsyncClient, run_worker: RunWorker
) -> None:
    assert (await api.post("/v1/events", json=SEED_SINGLE)).status_code == 202
    await post_batch(api, SEED_BATCH)
    await run_worker()

    events = await api.get(
        "/v1/devices/deviceA/events?from_time=2025-01-01T00:00:00&to_time=2025-12-31T00:00:00&limit=5"
    )
    assert events.status_code == 200
    body = events.json()
    assert [e["event_id"] for e in body["events"]] == ["e003", "e002", "e001"]
    assert body["events"][2] == {
        "event_id": "e001",
        "device_id": "deviceA",
        "site_id": None,
        "ts": "2025-01-15T10:00:00Z",
        "metrics": {"temp": 34.2, "cpu": 0.44},
        "tags": ["room:101", "sensor:v2"],
    }
    assert body["next_cursor"] is None

    aggregate = await api.get(
        "/v1/metrics/aggregate?metric=temp&device_id=deviceA&from_time=2025-01-01T00:00:00&to_time=2025-12-31T00:00:00&interval=1m"
    )
    assert aggregate.status_code == 200
    agg = aggregate.json()
    assert [(b["start"], b["count"], b["sum"], b["min"], b["max"]) for b in agg["buckets"]] == [
        ("2025-01-15T10:00:00Z", 1, 34.2, 34.2, 34.2),
        ("2025-01-15T10:02:00Z", 1, 30.0, 30.0, 30.0),
        ("2025-01-15T10:03:00Z", 1, 35.0, 35.0, 35.0),
    ]
    assert agg["buckets"][0]["end"] == "2025-01-15T10:01:00Z"
    assert "as_of" in agg and agg["staleness_bound_s"] > 0

    search = await api.get(
        "/v1/search?tag=room:101&from_time=2025-01-01T00:00:00&to_time=2025-12-31T00:00:00&limit=100"
    )
    assert search.status_code == 200
    assert [e["event_id"] for e in search.json()["events"]] == ["e002", "e001"]


async def test_device_events_page_by_cursor_and_accept_epoch_ms(
    api: httpx.AsyncClient, run_worker: RunWorker
) -> None:
    await post_batch(
        api, [reading(f"e{m}", "d1", f"2025-06-01T10:{m:02d}:00Z", temp=m) for m in range(7)]
    )
    await run_worker()
    seen: list[str] = []
    url = "/v1/devices/d1/events?limit=3&from_time=1748772060000&to_time=2025-06-01T10:06:00Z"
    cursor = None
    for _ in range(5):
        page = (await api.get(url + (f"&cursor={cursor}" if cursor else ""))).json()
        seen += [e["event_id"] for e in page["events"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # 10:01 (epoch ms 1748772060000) up to, not including, 10:06; newest first.
    assert seen == ["e5", "e4", "e3", "e2", "e1"]
    recent = (await api.get("/sensors/d1/recent?limit=2")).json()
    assert recent["sensor_id"] == "d1"
    assert [e["event_id"] for e in recent["events"]] == ["e6", "e5"]


async def test_read_parameters_are_validated_by_name(api: httpx.AsyncClient) -> None:
    base = "/v1/devices/d1/events"
    assert error_field(await api.get(f"{base}?from_time=yesterday")) == "from_time"
    assert error_field(await api.get(f"{base}?from_time=2025-02-01&to_time=2025-01-01")) == (
        "to_time"
    )
    assert error_field(await api.get(f"{base}?limit=0")) == "limit"
    assert error_field(await api.get(f"{base}?limit=many")) == "limit"
    assert error_field(await api.get(f"{base}?cursor=not-a-cursor")) == "cursor"
    assert error_field(await api.get("/v1/events?page=0")) == "page"
    assert error_field(await api.get("/v1/events?size=100000")) == "size"
    assert error_field(await api.get("/v1/events?page=100000&size=1000")) == "page"
    agg = "/v1/metrics/aggregate?metric=temp"
    assert error_field(await api.get(agg)) == "device_id"
    assert error_field(await api.get(f"{agg}&device_id=a&site_id=b")) == "device_id"
    assert error_field(await api.get(f"{agg}&device_id=a&interval=90s")) == "interval"
    assert error_field(await api.get(f"{agg}&device_id=a&interval=fortnightly")) == "interval"
    assert error_field(await api.get("/v1/metrics/aggregate?device_id=a")) == "metric"
    assert error_field(await api.get("/sites/s/agg?window=0m")) == "window"
    assert error_field(await api.get("/sites/s/agg?from=1748772000000&to=1748772030000")) == "to"
    assert error_field(await api.get("/v1/analytics/efficiency?window=24h")) == "device_id"
    assert error_field(await api.get("/v1/search")) == "tag"
    status = await api.get("/v1/devices/nobody/status")
    assert status.status_code == 404 and status.json()["error"]["field"] == "device_id"


async def test_listing_status_and_search_are_scoped_to_the_tenant(
    api: httpx.AsyncClient, run_worker: RunWorker
) -> None:
    acme = {"X-Tenant-ID": "acme"}
    rows = [
        reading("a1", "d1", "2025-06-01T10:00:00Z", tags=["room:1"], temp=1.0, hum=40.0),
        reading("a2", "d1", "2025-06-01T10:01:00Z", tags=["room:1", "x"], temp=2.0),
        reading("a3", "d2", "2025-06-01T10:01:00Z", tags=["room:2"], temp=3.0),
    ]
    assert (await api.post("/v1/events/batch", json=rows, headers=acme)).status_code == 202
    await post_batch(api, [reading("other", "d1", "2025-06-01T10:05:00Z", temp=9.0)])
    await run_worker()

    first = (await api.get("/v1/events?page=1&size=2", headers=acme)).json()
    second = (await api.get("/v1/events?page=2&size=2", headers=acme)).json()
    assert [e["event_id"] for e in first["events"]] == ["a3", "a2"] and first["has_more"]
    assert [e["event_id"] for e in second["events"]] == ["a1"] and not second["has_more"]
    assert [e["event_id"] for e in (await api.get("/v1/events")).json()["events"]] == ["other"]

    status = (await api.get("/v1/devices/d1/status", headers=acme)).json()
    assert status["last_seen"] == "2025-06-01T10:01:00Z"
    assert status["metrics"] == {
        "hum": {"value": 40.0, "ts": "2025-06-01T10:00:00Z"},
        "temp": {"value": 2.0, "ts": "2025-06-01T10:01:00Z"},
    }
    assert (await api.get("/v1/devices/d2/status")).status_code == 404

    both = (await api.get("/v1/search?tag=room:1&tag=x", headers=acme)).json()
    assert [e["event_id"] for e in both["events"]] == ["a2"]
    paged = (await api.get("/v1/search?tag=room:1&limit=1", headers=acme)).json()
    more = (
        await api.get(f"/v1/search?tag=room:1&limit=1&cursor={paged['next_cursor']}", headers=acme)
    ).json()
    assert [e["event_id"] for e in paged["events"] + more["events"]] == ["a2", "a1"]
    assert (await api.get("/v1/search?tag=room:1")).json()["events"] == []


async def test_aggregates_of_a_device_and_a_site_across_rollup_levels(
    api: httpx.AsyncClient, run_worker: RunWorker, read_settings: Settings
) -> None:
    # Two devices of one site; d1 every 20 s for two days, d2 once an hour.
    rows = []
    for second in range(0, 2 * 86400, 600):
        ts = 1748736000 + second  # 2025-06-01T00:00:00Z
        rows.append(reading(f"a{second}", "d1", f"{ts * 1000}", power_w=float(second % 7)))
        if second % 3600 == 0:
            rows.append(reading(f"b{second}", "d2", f"{ts * 1000}", power_w=100.0))
    await post_batch(api, rows)
    await run_worker()

    async def buckets(query: str) -> list[dict[str, Any]]:
        response = await api.get(f"/v1/metrics/aggregate?metric=power_w&{query}")
        assert response.status_code == 200, response.text
        result: list[dict[str, Any]] = response.json()["buckets"]
        return result

    def expect(device_rows: list[dict[str, Any]], lo: int, hi: int) -> tuple[int, float]:
        values = [
            r["metrics"]["power_w"] for r in device_rows if lo * 1000 <= int(r["ts"]) < hi * 1000
        ]
        return len(values), sum(values)

    d1 = [r for r in rows if r["device_id"] == "d1"]
    # A range that is not aligned to anything: raw edges, minutes, hours and days.
    lo, hi = 1748736000 + 37, 1748736000 + 86400 + 3 * 3600 + 125
    for refreshed in (False, True):
        if refreshed:
            # Materialised now; one second more keeps the cached realtime answers out.
            await refresh(read_settings)
            hi += 1
        for query_interval, expected_buckets in (("1d", 2), ("2h", 14), ("1h", 28)):
            got = await buckets(
                f"device_id=d1&from_time={lo * 1000}&to_time={hi * 1000}&interval={query_interval}"
            )
            assert len(got) == expected_buckets
            assert (sum(b["count"] for b in got), sum(b["sum"] for b in got)) == pytest.approx(
                expect(d1, lo, hi)
            )
            assert got[0]["start"] == "2025-06-01T00:00:37Z"
    site = await buckets(f"site_id=site-1&from_time={lo * 1000}&to_time={hi * 1000}&interval=1d")
    assert sum(b["count"] for b in site) == expect(rows, lo, hi)[0]
    assert max(b["max"] for b in site) == 100.0


async def test_site_energy_windows(
    api: httpx.AsyncClient, run_worker: RunWorker, read_settings: Settings
) -> None:
    # d1 draws 600 W for minute 0 (two samples), d2 1200 W in minutes 0 and 1; minute 2 none;
    # a negative (exporting) sample counts as zero energy.
    await post_batch(
        api,
        [
            reading("1", "d1", "2025-06-01T10:00:10Z", power_w=500.0),
            reading("2", "d1", "2025-06-01T10:00:40Z", power_w=700.0),
            reading("3", "d2", "2025-06-01T10:00:30Z", power_w=1200.0),
            reading("4", "d2", "2025-06-01T10:01:30Z", power_w=1200.0),
            reading("5", "d1", "2025-06-01T10:03:30Z", power_w=-50.0),
        ],
    )
    await run_worker()
    url = "/sites/site-1/agg?window=2m&from=2025-06-01T09:59:59.5Z&to=2025-06-01T10:0{}:59Z"
    for end in (5, 6):
        body = (await api.get(url.format(end))).json()
        # Trimmed inward to whole minutes.
        assert (body["from"], body["to"]) == ("2025-06-01T10:00:00Z", f"2025-06-01T10:0{end}:00Z")
        windows = body["windows"]
        assert [(w["start"], w["end"]) for w in windows] == [
            ("2025-06-01T10:00:00Z", "2025-06-01T10:02:00Z"),
            ("2025-06-01T10:02:00Z", "2025-06-01T10:04:00Z"),
        ]
        # Minute 0: 600 + 1200 W; minute 1: 1200 W. Energy = (1800 + 1200) / 60 Wh.
        assert windows[0]["energy_wh"] == pytest.approx(50.0)
        assert windows[0]["peak_power_w"] == pytest.approx(1800.0)
        assert windows[0]["avg_power_w"] == pytest.approx(1500.0)
        assert windows[1]["energy_wh"] == 0.0 and windows[1]["avg_power_w"] == 0.0
        assert [w["cumulative_energy_wh"] for w in windows] == pytest.approx([50.0, 50.0])
        await refresh(read_settings)


async def test_efficiency_flags_a_fault_below_the_threshold(
    api: httpx.AsyncClient, run_worker: RunWorker, read_settings: Settings
) -> None:
    import time

    now_ms = int(time.time() * 1000)
    await post_batch(
        api,
        [
            {
                "device_id": "meter",
                "site_id": "s9",
                "ts": now_ms - 3_600_000,
                "kwhConsumedAc": 10.0,
            },
            {"device_id": "car", "site_id": "s9", "ts": now_ms - 3_600_000, "kwhDeliveredDc": 8.0},
            {"device_id": "car2", "site_id": "s8", "ts": now_ms - 7_200_000, "kwhDeliveredDc": 9.0},
            {"device_id": "car2", "site_id": "s8", "ts": now_ms - 7_100_000, "kwhConsumedAc": 10.0},
        ],
    )
    await run_worker()
    fault = (await api.get("/v1/analytics/efficiency?site_id=s9&window=24h")).json()
    assert fault["efficiency_pct"] == 80.0 and fault["status"] == "FAULT_DETECTED"
    assert (fault["dc_delivered"], fault["ac_consumed"]) == (8.0, 10.0)
    ok = (await api.get("/v1/analytics/efficiency?device_id=car2")).json()
    assert ok["efficiency_pct"] == 90.0 and ok["status"] == "OK"
    short = (await api.get("/v1/analytics/efficiency?device_id=car2&window=1h")).json()
    assert short["status"] == "NO_DATA" and short["efficiency_pct"] is None


async def test_cached_answers_and_late_data_within_the_bound(
    api: httpx.AsyncClient, run_worker: RunWorker, read_settings: Settings
) -> None:
    await post_batch(api, [reading("a", "d1", "2025-06-01T10:00:00Z", temp=1.0)])
    await run_worker()
    await refresh(read_settings)  # the watermark passes 2025: these buckets are closed now
    url = (
        "/v1/metrics/aggregate?metric=temp&device_id=d1"
        "&from_time=2025-06-01T00:00:00Z&to_time=2025-06-02T00:00:00Z&interval=1h"
    )
    first = (await api.get(url)).json()
    assert [b["count"] for b in first["buckets"]] == [1]
    metrics = (await api.get("/metrics")).text
    assert "telemetry_aggregate_watermark_lag_seconds" in metrics

    # A late reading lands in the closed hour: the cached answer stands until a refresh...
    await post_batch(api, [reading("late", "d1", "2025-06-01T10:30:00Z", temp=3.0)])
    await run_worker()
    cached = (await api.get(url)).json()
    assert cached == first
    # ...which re-materialises that minute, logs it, and the cache lets the answer go.
    await refresh(read_settings)
    fresh = (await api.get(url)).json()
    assert [(b["count"], b["sum"]) for b in fresh["buckets"]] == [(2, 4.0)]
    assert fresh["as_of"] >= first["as_of"]
    hits = [
        line
        for line in (await api.get("/metrics")).text.splitlines()
        if line.startswith('telemetry_read_cache_hits_total{endpoint="aggregate"}')
    ]
    assert hits and float(hits[0].split()[-1]) >= 1


async def test_the_stated_bound_widens_when_late_changes_wait_longer(
    api: httpx.AsyncClient, db: asyncpg.Connection, run_worker: RunWorker, read_settings: Settings
) -> None:
    await post_batch(api, [reading("a", "d1", "2025-06-01T10:00:00Z", temp=1.0)])
    await run_worker()
    await refresh(read_settings)
    url = "/v1/metrics/aggregate?metric=temp&device_id=d1&from_time=2025-06-01T00:00:00Z&to_time={}"
    body = (await api.get(url.format("2025-06-02T00:00:00Z"))).json()
    assert body["staleness_bound_s"] == read_settings.late_data_bound_s
    # Two late minutes, one rebuilt per round: the other has waited 100 s by now.
    await post_batch(
        api,
        [
            reading("b", "d1", "2025-06-01T10:05:00Z", temp=2.0),
            reading("c", "d1", "2025-06-01T10:09:00Z", temp=3.0),
        ],
    )
    await run_worker()
    await db.execute("UPDATE rollup_dirty SET recorded_at = now() - interval '100 seconds'")
    await refresh(read_settings.model_copy(update={"refresh_max_minutes": 1}))
    body = (await api.get(url.format("2025-06-02T00:00:01Z"))).json()
    assert body["staleness_bound_s"] >= 100 + read_settings.refresh_interval_s
    # 10:05 is rebuilt; 10:09 still waits for the next round.
    assert [b["start"][11:16] for b in body["buckets"]] == ["10:00", "10:05"]
