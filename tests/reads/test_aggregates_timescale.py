"""The same reads on TimescaleDB (continuous aggregates) and on plain PostgreSQL (worker rollups).

Runs when TEST_TIMESCALE_URL names a PostgreSQL where the timescaledb extension can be
created (it must be preloaded); skips with the reason otherwise. Both paths get the same
events through the ingest path, the same refresher rounds, and must give the same answers.
"""

import random
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from app.core.settings import Settings
from app.main import create_app
from tests.fixtures.worker import RunWorker
from tests.reads import test_reads
from tests.reads.test_reads import reset_rollups
from workers.refresher import Refresher

pytestmark = pytest.mark.timescale

BASE_S = 1748736000  # 2025-06-01T00:00:00Z

read_settings = test_reads.read_settings


def dataset(seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Two days of readings from three devices on two sites, then a late batch."""
    rng = random.Random(seed)
    first = []
    for index in range(400):
        ts = BASE_S + rng.randrange(0, 2 * 86400)
        first.append(
            {
                "event_id": f"a{index}",
                "device_id": rng.choice(["d1", "d2", "d3"]),
                "site_id": rng.choice(["s1", "s2"]),
                "ts": ts * 1000 + rng.randrange(1000),
                "metrics": {"power_w": rng.choice([0.1, -3.0, rng.uniform(0, 4000)])},
            }
        )
    late = [
        {**event, "event_id": f"b{index}", "metrics": {"power_w": rng.uniform(-10, 900)}}
        for index, event in enumerate(rng.sample(first, 40))  # replacements
    ]
    late += [
        {
            "event_id": f"c{index}",
            "device_id": "d1",
            "site_id": "s1",
            "ts": (BASE_S + rng.randrange(0, 86400)) * 1000,
            "metrics": {"power_w": rng.uniform(0, 100)},
        }
        for index in range(30)
    ]
    now_ms = int(time.time() * 1000)
    late += [
        {
            "event_id": "r1",
            "device_id": "m",
            "site_id": "s1",
            "ts": now_ms - 7200_000,
            "kwhConsumedAc": 10.0,
        },
        {
            "event_id": "r2",
            "device_id": "v",
            "site_id": "s1",
            "ts": now_ms - 7100_000,
            "kwhDeliveredDc": 8.2,
        },
    ]
    return first, late + first[:5]  # and five redelivered duplicates


QUERIES = [
    f"/v1/metrics/aggregate?metric=power_w&device_id=d1&from_time={{lo}}&to_time={{hi}}&interval={i}"
    for i in ("1m", "90m", "1h", "1d")
] + [
    "/v1/metrics/aggregate?metric=power_w&site_id=s1&from_time={lo}&to_time={hi}&interval=2h",
    "/sites/s1/agg?window=15m&from={lo}&to={hi}",
    "/sites/s2/agg?window=1d&from={lo}&to={hi}",
    "/v1/analytics/efficiency?site_id=s1&window=24h",
]


async def answers(client: httpx.AsyncClient, tag: str) -> list[Any]:
    out = []
    lo, hi = (BASE_S + 3 * 3600 + 17) * 1000, (BASE_S + 86400 + 5 * 3600 + 41) * 1000
    for query in QUERIES:
        # A different range per phase, so no phase reads another's cached answer.
        response = await client.get(query.format(lo=lo, hi=hi + len(tag) * 60_000))
        assert response.status_code == 200, response.text
        body = response.json()
        for volatile in ("as_of", "staleness_bound_s", "from", "to"):
            body.pop(volatile, None)
        out.append(body)
    return out


@pytest.fixture
async def both(
    timescale_url: str, read_settings: Settings, redis: Redis, db: asyncpg.Connection
) -> AsyncIterator[dict[str, tuple[Settings, httpx.AsyncClient]]]:
    await reset_rollups(db)
    # Answers that touch the present expire at once: each phase below reads afresh.
    plain = read_settings.model_copy(update={"cache_ttl_recent_s": 1e-6})
    timescale = plain.model_copy(
        update={
            "database_url": timescale_url,
            "stream": "reads-ts:events",
            "dead_letter_stream": "reads-ts:dead",
            "dedupe_prefix": "reads-ts:seen",
        }
    )
    clients: dict[str, tuple[Settings, httpx.AsyncClient]] = {}
    async with AsyncExitStack() as stack:
        for name, path_settings in (("plain", plain), ("timescale", timescale)):
            application = create_app(path_settings)
            await stack.enter_async_context(application.router.lifespan_context(application))
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=application), base_url="http://t"
            )
            clients[name] = (path_settings, await stack.enter_async_context(client))
        yield clients


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def assert_same(plain: Any, timescale: Any, where: str = "") -> None:
    if isinstance(plain, dict):
        assert plain.keys() == timescale.keys(), where
        for key in plain:
            assert_same(plain[key], timescale[key], f"{where}.{key}")
    elif isinstance(plain, list):
        assert len(plain) == len(timescale), where
        for index, (a, b) in enumerate(zip(plain, timescale, strict=True)):
            assert_same(a, b, f"{where}[{index}]")
    elif isinstance(plain, float) or isinstance(timescale, float):
        assert plain == pytest.approx(timescale, rel=1e-9, abs=1e-9), where
    else:
        assert plain == timescale, where


async def test_both_paths_give_the_same_answers(
    both: dict[str, tuple[Settings, httpx.AsyncClient]], run_worker: RunWorker
) -> None:
    first, late = dataset(seed=3)
    results: dict[str, list[list[Any]]] = {}
    for name, (path_settings, client) in both.items():
        overrides = {
            key: getattr(path_settings, key)
            for key in ("database_url", "stream", "dead_letter_stream", "dedupe_prefix")
        }
        assert (await client.post("/v1/events/batch", json=first)).status_code == 202
        await run_worker(name=f"w-{name}", **overrides)
        results[name] = [await answers(client, "a")]  # everything realtime
        clock = Clock(datetime.fromtimestamp(BASE_S + 86400 + 3600 + 1234, UTC))
        refresher = Refresher(path_settings.model_copy(update={"refresh_lag_s": 0}), clock=clock)
        try:
            assert (await refresher.round()).led
            results[name].append(await answers(client, "bb"))  # part materialised
            response = await client.post("/v1/events/batch", json=late)
            assert [r["status"] for r in response.json()["results"]][-5:] == ["duplicate"] * 5
            await run_worker(name=f"w-{name}", **overrides)
            clock.now = datetime.now(UTC)
            assert (await refresher.round()).led
            results[name].append(await answers(client, "ccc"))  # late data refreshed
        finally:
            await refresher.close()
    plain, timescale = results["plain"], results["timescale"]
    assert_same(plain, timescale)
    # The comparison means something: data in every answer, and the late batch changed them.
    assert all(
        answer.get("buckets") or answer.get("windows") or answer.get("status")
        for answer in plain[2]
    )
    assert plain[2][0]["buckets"] != plain[1][0]["buckets"]
    assert plain[2][-1]["status"] == "FAULT_DETECTED"
