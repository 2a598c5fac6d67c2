"""A Redis Cluster master SIGKILLed under generator load: its replica is promoted on its own
(cluster-node-timeout 2 s, no CLUSTER FAILOVER), the killed node comes back as the new
master's replica, and the checker finds nothing lost, doubled or mismatched.

Acceptance is `replicated`: each shard's script call is followed by WAIT 1 on its master,
so what was answered accepted (or duplicate) is on the replica that takes over. While the
shard has no master, and while its new master has no replica, its requests are answered
503 and the generator retries them.
"""

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from fastapi import FastAPI
from redis.asyncio.cluster import RedisCluster

from app.core.redis import as_redis, create_cluster, initialize
from app.core.settings import Settings
from app.core.shards import all_shards, assigned
from app.main import create_app
from scripts.cluster import Cluster
from scripts.verify import check, load_truth, wait_drained
from tests.fixtures.cluster import new_cluster
from tests.helpers import wait_for
from tests.scripts.test_faults import Load, asgi
from workers.shards import ShardedWorker

pytestmark = pytest.mark.slow


@pytest.fixture
def six_nodes(tmp_path: Path) -> Iterator[Cluster]:
    cluster = new_cluster(tmp_path / "cluster", masters=3, replicas=1)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


async def test_a_master_killed_under_load_loses_nothing(
    six_nodes: Cluster, settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    cluster_settings = settings.model_copy(
        update={
            "redis_cluster_url": six_nodes.url,
            "stream_shards": 6,
            "required_durability": "replicated",
            "allow_volatile_queue": False,
            "durability_check_interval_s": 0.2,
            "replica_wait_ms": 500,
            "claim_idle_ms": 500,
            "block_ms": 100,
        }
    )
    client: RedisCluster = create_cluster(cluster_settings)
    await initialize(client)
    app: FastAPI = create_app(cluster_settings)
    workers = ShardedWorker(
        cluster_settings, as_redis(client), assigned(cluster_settings), name="w"
    )
    running = asyncio.create_task(workers.run())
    truth = tmp_path / "truth.ndjson"
    try:
        async with app.router.lifespan_context(app), asgi(app) as http:
            load = Load(http, truth, seconds=8)
            await load.confirmed(600)
            # The master of shard 0, and the replica that must take its place.
            await client.initialize()
            node = client.get_node_from_key(all_shards(cluster_settings)[0].stream)
            assert node is not None
            victim = int(node.port)
            heir = six_nodes.replica_of(victim)
            assert heir is not None
            six_nodes.kill_node(victim)
            killed_at, before = time.monotonic(), load.counts.retried_503
            await wait_for(lambda: _is_master(six_nodes, heir), 30)
            promoted_s = time.monotonic() - killed_at
            # Back as the new master's replica: replicated acceptance resumes.
            six_nodes.start_node(victim)
            await wait_for(lambda: _whole(six_nodes), 30)
            whole_s = time.monotonic() - killed_at
            assert six_nodes.role(victim) == "slave"
            counts = await load.finish()
            assert counts.retried_503 > before, "the failover was never seen by a client"
        loaded = load_truth(truth)
        await wait_drained(db, loaded, cluster_settings, 60)
        report = await check(db, loaded)
        assert report.ok, report.lines(loaded.run)
        assert report.stored == loaded.expected > 1000
        print(
            f"failover: replica promoted {promoted_s:.1f} s after the SIGKILL, cluster whole "
            f"again at {whole_s:.1f} s; {counts.retried_503 - before} answers 503 retried"
        )
    finally:
        workers.stop()
        await asyncio.wait_for(running, timeout=30)
        await workers.close()
        await client.aclose()


async def _is_master(cluster: Cluster, port: int) -> bool:
    return await asyncio.to_thread(cluster.role, port) == "master"


async def _whole(cluster: Cluster) -> bool:
    return await asyncio.to_thread(cluster.whole)
