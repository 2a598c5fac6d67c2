"""Reads from a streaming replica (READ_DATABASE_URL) of a local PostgreSQL 15 primary.

Events go in through the API and a burst worker to the primary; the read routes and the
forecaster's history read the replica. Replay is paused to make the replica lag on purpose,
and the replica is stopped to show the reads moving to the primary and back.
"""

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from app.core.replica import ReadPool, Sample
from app.core.settings import Settings
from app.main import create_app
from tests.fixtures.replica import ReplicaCluster
from tests.fixtures.worker import RunWorker
from tests.forecast.service_fixtures import QUARTER, T0, Write, daily, iso, readings
from tests.helpers import event, post_batch, wait_for
from tests.reads.test_reads import reset_rollups

FALLBACKS = 'telemetry_read_replica_fallbacks_total{reason="unreachable"}'
LAG_FALLBACKS = 'telemetry_read_replica_fallbacks_total{reason="lag"}'
HOUR = "from_time=2025-06-01T10:00:00Z&to_time=2025-06-01T11:00:00Z&interval=1h"


@pytest.fixture
def settings(settings: Settings, replica_cluster: ReplicaCluster) -> Settings:
    return settings.model_copy(
        update={
            "database_url": replica_cluster.primary.url(),
            "read_database_url": replica_cluster.replica.url(),
            # Quick probes, so a test sees each move within a fraction of a second.
            "read_replica_sample_s": 0.1,
            "read_replica_recheck_s": 0.2,
            "read_replica_timeout_s": 1.0,
            "cache_sync_interval_s": 1e-6,
        }
    )


@pytest.fixture
async def cluster(replica_cluster: ReplicaCluster) -> AsyncIterator[ReplicaCluster]:
    """The cluster, left streaming and caught up whatever the test did to its replica."""
    yield replica_cluster
    data = replica_cluster.replica.data
    assert data is not None
    if not (data / "postmaster.pid").exists():
        replica_cluster.replica.start()
    replica_cluster.resume_replay()


@pytest.fixture(autouse=True)
async def realtime(db: asyncpg.Connection) -> None:
    """No rollup watermark: every answer is realtime, its stated bound CACHE_TTL_RECENT_S."""
    await reset_rollups(db)


async def caught_up(cluster: ReplicaCluster, seconds: float = 10.0) -> None:
    """Wait until the replica has replayed everything the primary has written so far."""
    target = cluster.primary.sql("SELECT pg_current_wal_lsn()::text")

    async def replayed() -> bool:
        return bool(cluster.replica.sql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'"))

    await wait_for(replayed, seconds)


def on_replica(reads: ReadPool) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return reads.reads == "replica"

    return check


async def event_ids(client: httpx.AsyncClient, device: str = "d1") -> list[str]:
    response = await client.get(f"/v1/devices/{device}/events")
    assert response.status_code == 200, response.text
    return sorted(e["event_id"] for e in response.json()["events"])


async def aggregate(client: httpx.AsyncClient, query: str) -> dict[str, Any]:
    response = await client.get(f"/v1/metrics/aggregate?device_id=d1&metric=temp&{query}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def metric(text: str, name: str) -> float:
    """A sample of the /metrics text; 0 for a labelled series not created yet."""
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    if found is None:
        assert "{" in name, name
        return 0.0
    return float(found.group(1))


async def test_an_event_written_to_the_primary_is_answered_from_the_replica(
    app: FastAPI, client: httpx.AsyncClient, run_worker: RunWorker, cluster: ReplicaCluster
) -> None:
    reads: ReadPool = app.state.read_pool
    await wait_for(on_replica(reads))
    await caught_up(cluster)
    cluster.pause_replay()
    await post_batch(client, [event("r1", minute=1)])
    await run_worker()
    stored = cluster.primary.sql("SELECT count(*) FROM events WHERE event_id = 'r1'")
    assert stored == 1
    # Stored on the primary, not replayed yet: the read answers from the replica.
    assert await event_ids(client) == []
    cluster.resume_replay()

    async def shown() -> bool:
        return await event_ids(client) == ["r1"]

    await wait_for(shown)
    assert reads.reads == "replica"
    ready = (await client.get("/readyz")).json()["checks"]["read_replica"]
    assert ready["configured"] and ready["reads"] == "replica" and ready["lag_s"] is not None


async def test_the_bound_widens_by_the_measured_lag_while_replay_waits(
    app: FastAPI,
    client: httpx.AsyncClient,
    run_worker: RunWorker,
    cluster: ReplicaCluster,
    settings: Settings,
) -> None:
    reads: ReadPool = app.state.read_pool
    stated = settings.cache_ttl_recent_s  # the bound of a realtime answer on the primary
    await post_batch(client, [event("b1", minute=1)])
    await run_worker()
    await caught_up(cluster)
    await wait_for(on_replica(reads))
    fresh = await aggregate(client, HOUR)
    assert fresh["buckets"][0]["count"] == 1
    assert stated <= fresh["staleness_bound_s"] < stated + 1

    cluster.pause_replay()
    await post_batch(client, [event("b2", minute=2)])
    await run_worker()

    async def lagging() -> bool:
        return (reads.status()["lag_s"] or 0) >= 1.5

    await wait_for(lagging)
    measured = reads.status()["lag_s"]
    before = time.time()
    # A new key, so the answer is computed now (a cached one keeps the lag it was read at).
    lagged = await aggregate(client, HOUR.replace("11:00:00Z", "10:59:00Z"))
    assert lagged["buckets"][0]["count"] == 1  # b2 is on the primary only
    assert lagged["staleness_bound_s"] >= stated + measured
    as_of = datetime.fromisoformat(lagged["as_of"]).timestamp()
    assert before - measured - 1 <= as_of <= before - measured + 0.05
    metrics = (await client.get("/metrics")).text
    assert metric(metrics, "telemetry_read_replica_lag_seconds") >= measured - 0.001
    assert metric(metrics, "telemetry_read_replica_in_use") == 1
    ready = (await client.get("/readyz")).json()["checks"]["read_replica"]
    assert ready["reads"] == "replica" and ready["lag_s"] >= measured

    cluster.resume_replay()
    await caught_up(cluster)

    async def caught() -> bool:
        return bool(reads.status()["lag_s"] == 0)

    await wait_for(caught)
    again = await aggregate(client, HOUR.replace("11:00:00Z", "10:58:00Z"))
    assert again["buckets"][0]["count"] == 2
    assert stated <= again["staleness_bound_s"] < stated + 1


async def test_reads_fall_back_to_the_primary_while_the_replica_is_down(
    app: FastAPI, client: httpx.AsyncClient, run_worker: RunWorker, cluster: ReplicaCluster
) -> None:
    reads: ReadPool = app.state.read_pool
    await wait_for(on_replica(reads))
    await post_batch(client, [event("f1", minute=1)])
    await run_worker()

    async def on_the_replica() -> bool:
        return await event_ids(client) == ["f1"]

    await wait_for(on_the_replica)
    moves = metric((await client.get("/metrics")).text, FALLBACKS)
    cluster.replica.stop("fast")
    try:
        await post_batch(client, [event("f2", minute=2)])
        await run_worker()
        # The primary answers, with what only it holds, and an unwidened bound.
        assert await event_ids(client) == ["f1", "f2"]
        answer = await aggregate(client, HOUR)
        assert answer["buckets"][0]["count"] == 2
        assert answer["staleness_bound_s"] == app.state.settings.cache_ttl_recent_s
        assert reads.reads == "primary"
        text = (await client.get("/metrics")).text
        assert metric(text, "telemetry_read_replica_in_use") == 0
        assert metric(text, FALLBACKS) == moves + 1
        ready = await client.get("/readyz")
        assert ready.status_code == 200  # reads are served: the replica is reported only
        assert ready.json()["checks"]["read_replica"]["reads"] == "primary"
    finally:
        cluster.replica.start()
    # Back on the replica once a probe finds it, and it has caught up meanwhile.
    await wait_for(on_replica(reads), 15)
    await caught_up(cluster)
    assert await event_ids(client) == ["f1", "f2"]


async def test_a_read_the_replica_fails_midway_is_answered_by_the_primary(
    app: FastAPI,
    client: httpx.AsyncClient,
    run_worker: RunWorker,
    cluster: ReplicaCluster,
    db: asyncpg.Connection,
) -> None:
    reads: ReadPool = app.state.read_pool
    await post_batch(client, [event("m1", minute=1)])
    await run_worker()
    await caught_up(cluster)
    await wait_for(on_replica(reads))
    # An exclusive lock on the primary is replayed on the replica: a read there waits on it.
    locker = await asyncpg.connect(cluster.primary.url())
    held = locker.transaction()
    await held.start()
    try:
        await locker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        # Another commit flushes the WAL holding the lock, so the replica replays it.
        await db.fetchval("SELECT txid_current()")

        async def replayed() -> bool:
            return bool(
                cluster.replica.sql(
                    "SELECT count(*) FROM pg_locks WHERE relation = 'events'::regclass"
                    " AND mode = 'AccessExclusiveLock' AND granted"
                )
            )

        await wait_for(replayed)
        request = asyncio.create_task(client.get("/v1/devices/d1/events"))

        def waiting(server: Any, name: str) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return bool(
                    server.sql(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        f" AND application_name = '{name}'"
                    )
                )

            return check

        await wait_for(waiting(cluster.replica, "telemetry-api-read"))
        # The replica goes away under the read: it runs again on the primary.
        await asyncio.to_thread(cluster.replica.stop, "fast")
        await wait_for(waiting(cluster.primary, "telemetry-api"))
        await held.rollback()
        response = await request
    finally:
        await locker.close()
    assert response.status_code == 200, response.text
    assert [e["event_id"] for e in response.json()["events"]] == ["m1"]
    assert reads.reads == "primary"


async def test_the_forecaster_reads_history_from_the_replica(
    forecaster: httpx.AsyncClient,
    forecaster_app: FastAPI,
    write: Write,
    cluster: ReplicaCluster,
) -> None:
    reads: ReadPool = forecaster_app.state.read_pool
    days = 2 * 96
    window = f"sensor_id=d1&step=15m&from={iso(T0)}&to={iso(T0 + days * QUARTER)}"
    await caught_up(cluster)
    await wait_for(on_replica(reads))
    cluster.pause_replay()
    await write(readings("d1", daily(days)))
    # The history is on the primary; the training reads the replica, which has none yet.
    missing = await forecaster.post(f"/train?{window}")
    assert missing.status_code == 404, missing.text
    cluster.resume_replay()
    await caught_up(cluster)
    trained = await forecaster.post(f"/train?{window}")
    assert trained.status_code == 201, trained.text
    assert trained.json()["observed_points"] == days
    ready = (await forecaster.get("/readyz")).json()["checks"]["read_replica"]
    assert ready["configured"] and ready["reads"] == "replica"


async def test_a_replica_lagging_past_the_bound_hands_reads_to_the_primary(
    settings: Settings,
    redis: Redis,
    db: asyncpg.Connection,
    run_worker: RunWorker,
    cluster: ReplicaCluster,
) -> None:
    application = create_app(settings.model_copy(update={"read_replica_max_lag_s": 1.0}))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            reads: ReadPool = application.state.read_pool
            await caught_up(cluster)
            await wait_for(on_replica(reads))
            moves = metric((await client.get("/metrics")).text, LAG_FALLBACKS)
            cluster.pause_replay()
            await post_batch(client, [event("l1", minute=1)])
            await run_worker()

            async def on_primary() -> bool:
                return reads.reads == "primary"

            await wait_for(on_primary)
            assert "READ_REPLICA_MAX_LAG_S" in reads.status()["detail"]
            assert metric((await client.get("/metrics")).text, LAG_FALLBACKS) == moves + 1
            # Answered by the primary: what the replica has not replayed is there.
            assert await event_ids(client) == ["l1"]
            cluster.resume_replay()
            await wait_for(on_replica(reads))
            assert await event_ids(client) == ["l1"]


@pytest.mark.parametrize(
    ("sample", "lag"),
    [
        # An idle primary: everything received is replayed, the last replay long ago.
        (Sample(standby=True, caught_up=True, streaming=True, behind_s=3600.0), 0.0),
        # Nothing replayed since start (NULL timestamp) but caught up: lacks nothing.
        (Sample(standby=True, caught_up=True, streaming=True, behind_s=None), 0.0),
        # Behind what it received: the time since the last replayed commit.
        (Sample(standby=True, caught_up=False, streaming=True, behind_s=2.5), 2.5),
        # Cut off from the primary: caught up with what it has, which may be old.
        (Sample(standby=True, caught_up=True, streaming=False, behind_s=40.0), 40.0),
        # Behind, and nothing replayed since start: unknown.
        (Sample(standby=True, caught_up=False, streaming=True, behind_s=None), None),
        # Not a standby (a promoted replica, or the primary itself): no lag.
        (Sample(standby=False, caught_up=False, streaming=False, behind_s=None), 0.0),
    ],
)
def test_the_lag_of_a_sample(sample: Sample, lag: float | None) -> None:
    assert sample.lag_s == lag
