"""The load generator: its profile, its signals, its retries, its live config, and a short
run through the real API and workers that the checker finds complete."""

import asyncio
import math
import random
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from fastapi import FastAPI

from app.generator.config import GeneratorConfig
from scripts.generate import (
    Generator,
    Options,
    Sensor,
    Signals,
    TruthWriter,
    base_url,
    build,
    generate,
)
from scripts.verify import check, load_truth
from tests.fixtures.worker import RunWorker
from tests.helpers import wait_for


def quiet(**overrides: Any) -> Options:
    defaults: dict[str, Any] = {"quiet": True, "devices": 40, "tenants": 2, "seed": 7}
    return Options(**(defaults | overrides))


def asgi_client(app: FastAPI) -> httpx.AsyncClient:
    # As served: an exception in the app is a 500 the generator retries, not a crash.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


# Config route ---------------------------------------------------------------------------


async def test_config_defaults_then_stored_per_tenant(client: httpx.AsyncClient) -> None:
    first = await client.get("/v1/generator/config")
    assert first.status_code == 200
    assert first.json()["rate"] == 1000.0 and first.json()["updated_at"] is None
    put = await client.put(
        "/v1/generator/config", json={"rate": 2500, "batch_size": 100, "paused": True}
    )
    assert put.status_code == 200, put.text
    assert put.json()["updated_at"] is not None
    stored = (await client.get("/v1/generator/config")).json()
    assert (stored["rate"], stored["batch_size"], stored["paused"]) == (2500.0, 100, True)
    # The GET body can be PUT back as it is.
    assert (await client.put("/v1/generator/config", json=stored)).status_code == 200
    other = (await client.get("/v1/generator/config", headers={"X-Tenant-ID": "acme"})).json()
    assert other["rate"] == 1000.0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rate": -1}, "rate"),
        ({"duplicate_rate": 0.9}, "duplicate_rate"),
        ({"batch_size": 0}, "batch_size"),
        ({"burst_seconds": 90, "burst_every_s": 60}, "burst_seconds"),
        ({"rat": 5}, "rat"),
    ],
)
async def test_config_refuses_bad_values_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.put("/v1/generator/config", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == field


# Profile and signals (no network) -------------------------------------------------------


def test_profile_rates_lateness_and_per_sensor_order() -> None:
    config = GeneratorConfig(duplicate_rate=0.0075, out_of_order_rate=0.02, correction_rate=0)
    generator = Generator(quiet(devices=300), config, httpx.AsyncClient())
    now = time.monotonic()
    emitted = [generator.emit(now) for _ in range(40_000)]
    counts = generator.counts
    assert 0.015 <= counts.late / counts.created <= 0.025
    assert 0.005 <= counts.resent / counts.created <= 0.010
    bound = config.max_out_of_order_ms / 1000
    late = [release - now for release, _, _ in generator._held]
    assert late and max(late) <= max(bound, 2.0)
    last: dict[str, int] = {}
    for event in emitted:
        assert event.ts > last.get(event.sensor.device_id, 0)
        last[event.sensor.device_id] = event.ts
    assert len({e.event_id for e in emitted}) == len(emitted)


async def test_single_event_requests_are_not_throttled_by_the_buffer() -> None:
    # The producer once allowed (free queue slots + 1) x batch_size events per 50 ms tick:
    # 17 single events, so batch size 1 never passed ~340 events/s with an idle API.
    config = GeneratorConfig(
        rate=10_000, batch_size=1, duplicate_rate=0, out_of_order_rate=0, correction_rate=0
    )
    generator = Generator(quiet(concurrency=8), config, httpx.AsyncClient())
    now = time.monotonic()
    await generator.tick(now, 1.0, 0.05)
    assert generator.counts.created == 500
    # With no sender taking anything, what waits in the process stays bounded.
    for _ in range(10):
        await generator.tick(now, 1.0, 0.05)
    assert generator.counts.created == generator.buffer() == 2000
    # A pause forgets the readings still due instead of sending them all afterwards.
    generator.config = config.model_copy(update={"paused": True})
    await generator.tick(now, 1.0, 0.05)
    generator.config = config
    assert generator._advance(10_000, 0.0) == generator.counts.created


def test_bursts_are_ten_times_for_ten_seconds_every_minute() -> None:
    generator = Generator(quiet(), GeneratorConfig(rate=100), httpx.AsyncClient())
    rates = [generator.target_rate(second + 0.5) for second in range(180)]
    assert rates.count(1000.0) == 30 and rates.count(100.0) == 150
    assert all(rates[s] == 1000.0 for s in range(50, 60))


def test_signals_follow_the_sun_and_the_grid() -> None:
    signals = Signals(random.Random(1), 37.77, 0.0)
    midnight = 1_750_000_000_000 // 86_400_000 * 86_400_000
    noon = midnight + 12 * 3_600_000
    solar = Sensor("t", "s", "solar", "site", [], 37.77, 0.0, 5000.0, cloud=1.0)
    assert signals.reading(solar, midnight)["power_w"] == 0.0
    assert signals.reading(solar, noon)["power_w"] > 2500
    meter = Sensor("t", "m", "meter", "site", [], 37.77, 0.0, 4000.0)
    for hour in range(24):
        reading = signals.reading(meter, midnight + hour * 3_600_000)
        assert 220 < reading["voltage_v"] < 240
        assert math.isclose(
            reading["current_a"], reading["power_w"] / reading["voltage_v"], abs_tol=1e-3
        )
    truck = Sensor("t", "v", "tracker", "site", [], 37.77, 0.0, 0.0, speed=50.0)
    truck.last_ts = noon
    moved = signals.reading(truck, noon + 60_000)
    assert 0 < math.hypot(moved["latitude"] - 37.77, moved["longitude"]) < 0.05


def test_seed_001_variables_select_its_burst_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "INGEST_URL": "http://127.0.0.1:4000/event",
        "DEVICES": "5",
        "BURSTS": "3",
        "BURST_SIZE": "20",
        "BURST_INTERVAL_MS": "250",
        "DUPLICATE_RATE": "0.05",
        "OUT_OF_ORDER_RATE": "0.1",
        "MAX_OUT_OF_ORDER_MS": "800",
        "BASE_LAT": "52.5",
        "BASE_LON": "13.4",
    }.items():
        monkeypatch.setenv(name, value)
    options, config, _ = build([])
    assert options.url == "http://127.0.0.1:4000"
    assert (options.devices, options.bursts, options.burst_size) == (5, 3, 20)
    assert (options.burst_interval_ms, options.base_lat, options.base_lon) == (250, 52.5, 13.4)
    assert (config.duplicate_rate, config.out_of_order_rate) == (0.05, 0.1)
    assert (config.max_out_of_order_ms, config.batch_size) == (800, 1)
    # An explicit rate means the sustained seed-000 profile, whatever the environment says.
    options, config, _ = build(["--rate", "300", "--duplicate-rate", "0.01"])
    assert options.bursts is None and config.rate == 300 and config.duplicate_rate == 0.01
    assert base_url("http://h:1/v1/events/batch") == "http://h:1"


# Retries ---------------------------------------------------------------------------------


async def test_429_and_503_are_retried_after_retry_after(tmp_path: Path) -> None:
    calls: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "7"})
        if len(calls) == 2:
            return httpx.Response(503, headers={"Retry-After": "3"})
        events = orjson.loads(request.content)
        results = [{"event_id": e["event_id"], "status": "accepted"} for e in events]
        return httpx.Response(202, json={"results": results})

    waits: list[float] = []

    async def backoff(seconds: float) -> None:
        waits.append(seconds)

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://test")
    generator = Generator(quiet(follow=False), GeneratorConfig(), client, backoff=backoff)
    truth = TruthWriter(tmp_path / "truth.ndjson", {"run": "r", "devices": {}})
    generator.truth = truth
    batch = [generator.emit(time.monotonic()) for _ in range(5)]
    await generator.deliver("default", batch)
    truth.close({})
    assert waits == [7.0, 3.0]
    assert (generator.counts.retried_429, generator.counts.retried_503) == (1, 1)
    assert generator.counts.accepted == 5
    assert len((tmp_path / "truth.ndjson").read_bytes().splitlines()) == 7


async def test_a_batch_never_answered_is_written_as_unacknowledged(tmp_path: Path) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": "5"})

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://test")
    generator = Generator(quiet(follow=False, give_up_s=1.0), GeneratorConfig(), client)
    truth = TruthWriter(tmp_path / "truth.ndjson", {"run": "r", "devices": {}})
    generator.truth = truth
    await generator.deliver("default", [generator.emit(time.monotonic()) for _ in range(3)])
    truth.close({})
    assert generator.counts.unconfirmed == 3
    expected = load_truth(tmp_path / "truth.ndjson")
    assert expected.expected == 0 and expected.unconfirmed == 3


# End to end through the API and the workers ----------------------------------------------


async def test_a_short_run_is_stored_exactly_once_with_latest_write_winning(
    app: FastAPI, db: asyncpg.Connection, run_worker: RunWorker, tmp_path: Path
) -> None:
    config = GeneratorConfig(
        rate=600,
        burst_multiplier=4,
        burst_seconds=0.5,
        burst_every_s=1.0,
        duplicate_rate=0.02,
        out_of_order_rate=0.03,
        max_out_of_order_ms=300,
        correction_rate=0.03,
        batch_size=50,
    )
    options = quiet(duration_s=1.5, invalid_rate=0.01, first_burst_at_s=0.5)
    async with asgi_client(app) as http:
        counts = await generate(options, config, tmp_path / "truth.ndjson.gz", client=http)
    assert counts.unconfirmed == 0 and counts.unexpected_rejects == 0
    assert counts.duplicate > 0 and counts.rejected == counts.invalid > 0
    assert counts.corrections > 0 and counts.late > 0
    await run_worker()
    truth = load_truth(tmp_path / "truth.ndjson.gz")
    assert truth.expected == counts.confirmed - counts.corrections > 500
    report = await check(db, truth)
    assert report.ok, report.lines(truth.run)
    assert report.stored == truth.expected and report.corrected_keys == counts.corrections


async def test_seed_001_profile_runs_single_event_requests(
    app: FastAPI, db: asyncpg.Connection, run_worker: RunWorker, tmp_path: Path
) -> None:
    options = quiet(devices=5, tenants=1, bursts=3, burst_size=20, burst_interval_ms=50)
    config = GeneratorConfig(
        duplicate_rate=0.05, out_of_order_rate=0.1, max_out_of_order_ms=200, batch_size=1
    )
    async with asgi_client(app) as http:
        counts = await generate(options, config, tmp_path / "truth.ndjson", client=http)
    assert counts.created == 60 and counts.requests >= 60
    await run_worker()
    truth = load_truth(tmp_path / "truth.ndjson")
    report = await check(db, truth)
    assert report.ok, report.lines(truth.run)
    assert report.stored == 60


async def test_a_running_generator_follows_the_backend_config(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    options = quiet(duration_s=20, config_poll_s=0.02)
    async with asgi_client(app) as http:
        generator = Generator(options, GeneratorConfig(rate=50, correction_rate=0), http)
        task = asyncio.create_task(generator.run())
        try:

            async def published() -> bool:
                rate: float = (await client.get("/v1/generator/config")).json()["rate"]
                return rate == 50.0

            await wait_for(published)
            await client.put("/v1/generator/config", json={"rate": 321, "paused": True})

            async def followed() -> bool:
                return generator.config.rate == 321 and generator.config.paused

            await wait_for(followed)
            assert generator.target_rate(1.0) == 0.0 and generator.config_changes == 1
        finally:
            generator.options.duration_s = 0
            await asyncio.wait_for(task, timeout=30)
