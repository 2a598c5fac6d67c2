"""Ingest on Redis Cluster: routing by (tenant, device), one slot per shard, dedupe across
shards, statuses in request order, backpressure per shard, readiness per shard."""

from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from fastapi import FastAPI
from redis.asyncio.cluster import RedisCluster

from app.core.settings import Settings
from app.core.shards import all_shards, assigned, route, shard, startup_nodes, tag
from app.ingest.cluster import ShardedEnqueuer
from app.main import create_app
from tests.fixtures.cluster import SHARDS, devices_on_every_shard
from tests.helpers import event, post_batch


def test_routing_is_stable_and_spreads_devices() -> None:
    # blake2b, not Python's per-process hash: the same shard in every process and release.
    assert route("t1", "dev-0", 8) == route("t1", "dev-0", 8)
    assert [route("t1", f"dev-{n}", 8) for n in range(6)] == [5, 3, 2, 4, 2, 2]
    counts = [0] * 8
    for n in range(8000):
        counts[route("t1", f"dev-{n}", 8)] += 1
    assert min(counts) > 800 and max(counts) < 1200
    # The tenant is part of the key: the same device name of another tenant may go elsewhere.
    assert any(route("a", f"d{n}", 8) != route("b", f"d{n}", 8) for n in range(10))


def test_settings_name_the_shards_and_the_nodes(settings: Settings) -> None:
    some = settings.model_copy(update={"stream_shards": 8, "worker_shards": "0-2, 5"})
    assert [s.index for s in assigned(some)] == [0, 1, 2, 5]
    assert len(assigned(some.model_copy(update={"worker_shards": ""}))) == 8
    with pytest.raises(ValueError, match="outside"):
        assigned(some.model_copy(update={"worker_shards": "7-8"}))
    assert startup_nodes("redis://127.0.0.1:7000, 10.0.0.2:7001") == [
        ("127.0.0.1", 7000),
        ("10.0.0.2", 7001),
    ]


async def test_shards_spread_evenly_over_the_masters(
    cluster_settings: Settings, cluster_client: RedisCluster
) -> None:
    await cluster_client.initialize()
    served: dict[str, int] = {}
    for one in all_shards(cluster_settings):
        node = cluster_client.get_node_from_key(one.stream)
        assert node is not None
        served[node.name] = served.get(node.name, 0) + 1
    assert sorted(served.values()) == [2, 2, 2]
    assert tag(1, 6) != tag(1, 8)


async def test_every_key_of_a_shard_is_in_its_slot(
    cluster_settings: Settings,
    cluster_http: httpx.AsyncClient,
    cluster_client: RedisCluster,
    cluster_app: FastAPI,
) -> None:
    for one in all_shards(cluster_settings):
        enqueuer: ShardedEnqueuer = cluster_app.state.enqueuer
        names = [
            one.stream,
            one.dead_letter_stream,
            enqueuer.prefix(one, "t{1}:x"),  # a tenant holding hash-tag characters
            one.alert_stream,
            f"{one.alert_state_prefix}:t:1:d",
            one.sync_key,
        ]
        assert {cluster_client.keyslot(name) for name in names} == {
            cluster_client.keyslot(one.stream)
        }
    devices = devices_on_every_shard()
    body = await post_batch(
        cluster_http,
        [event(f"e{n}", device=device, minute=n) for n, device in enumerate(devices)],
    )
    assert body["accepted"] == SHARDS
    # What the script wrote: every key of the request, grouped by its tag, in one slot.
    by_tag: dict[str, set[int]] = {}
    async for raw in cluster_client.scan_iter(match="telemetry:*", count=1000):
        key = raw.decode()
        found = key[key.index("{") : key.index("}") + 1]
        by_tag.setdefault(found, set()).add(cluster_client.keyslot(key))
    assert sorted(by_tag) == sorted(tag(i, SHARDS) for i in range(SHARDS))
    assert all(len(slots) == 1 for slots in by_tag.values())
    # One entry per shard stream, holding that shard's device.
    for index, device in enumerate(devices):
        entries: Any = await cluster_client.xrange(shard(cluster_settings, index).stream)
        assert len(entries) == 1
        assert orjson.loads(entries[0][1][b"d"])["device_id"] == device


async def test_dedupe_across_shards_keeps_request_order(
    cluster_http: httpx.AsyncClient, cluster_app: FastAPI
) -> None:
    devices = devices_on_every_shard()
    first = [event(f"e{n}", device=device, minute=n) for n, device in enumerate(devices)]
    assert (await post_batch(cluster_http, first))["accepted"] == SHARDS
    # New and already-seen events interleaved across shards: statuses in request order.
    mixed = [
        event("e0", device=devices[0], minute=0),
        event("n1", device=devices[1], minute=30),
        event("e2", device=devices[2], minute=2),
        event("n3", device=devices[3], minute=31),
        event("n3", device=devices[3], minute=31),
        event("e5", device=devices[5], minute=5),
    ]
    body = await post_batch(cluster_http, mixed)
    statuses = [r["status"] for r in body["results"]]
    assert statuses == ["duplicate", "accepted", "duplicate", "accepted", "duplicate", "duplicate"]
    assert [r["event_id"] for r in body["results"]] == ["e0", "n1", "e2", "n3", "n3", "e5"]
    # The same ids for another tenant are new events.
    other = await cluster_http.post(
        "/v1/events/batch", json=first, headers={"X-Tenant-ID": "other"}
    )
    assert other.json()["accepted"] == SHARDS
    single = await cluster_http.post("/v1/events", json=first[3])
    assert single.json() == {"event_id": "e3", "status": "duplicate"}
    enqueuer: ShardedEnqueuer = cluster_app.state.enqueuer
    ts_us = 1_748_772_000_000_000 + 3 * 60_000_000
    assert await enqueuer.is_seen("default", devices[3], "e3", ts_us)


async def test_a_full_shard_refuses_only_its_own_events(
    cluster_settings: Settings, db: asyncpg.Connection
) -> None:
    tight = cluster_settings.model_copy(update={"backlog_max_entries": 1})
    application = create_app(tight)
    devices = devices_on_every_shard()
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://test"
        ) as http,
    ):
        for minute in range(2):
            response = await http.post("/v1/events", json=event(f"a{minute}", devices[0], minute))
            assert response.status_code == 202
        refused = await http.post("/v1/events", json=event("a9", devices[0], 9))
        assert refused.status_code == 429
        assert "shard s0" in refused.json()["error"]["message"]
        assert refused.headers["Retry-After"] == str(tight.retry_after_s)
        # A batch touching the full shard enqueues nothing of it, anywhere.
        mixed = await http.post(
            "/v1/events/batch", json=[event("b1", devices[1], 1), event("b0", devices[0], 2)]
        )
        assert mixed.status_code == 429
        served = await http.post("/v1/events", json=event("b1", devices[1], 1))
        assert served.json()["status"] == "accepted"
        ready = (await http.get("/readyz")).json()
        shards = ready["checks"]["backlog"]["shards"]
        assert shards["s0"]["entries"] == 2 and shards["s0"]["status"] == "over limit"
        assert shards["s1"] == {"entries": 1, "oldest_age_s": shards["s1"]["oldest_age_s"],
                                "status": "ok"}  # fmt: skip
        metrics = (await http.get("/metrics")).text
        assert 'telemetry_stream_shard_backlog_entries{shard="s0"} 2.0' in metrics
