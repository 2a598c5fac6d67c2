"""Redis clients, made by a factory inside lifespans, never at import."""

import asyncio
import time
from contextlib import suppress
from typing import cast

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from app.core.settings import Settings
from app.core.shards import startup_nodes


def create_redis(settings: Settings) -> Redis:
    return Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=2,
        socket_timeout=10,
        health_check_interval=15,
    )


def create_cluster(settings: Settings) -> RedisCluster:
    """The Redis Cluster client (REDIS_CLUSTER_URL): commands go to the master of their
    key's slot; MOVED and a failed-over master are followed by re-reading the topology.
    Retries are few and short, so a shard whose master is down answers an error (503)
    within about a second rather than holding the request."""
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in startup_nodes(
            settings.redis_cluster_url
        )],
        # While one master fails over, the other shards keep serving.
        require_full_coverage=False,
        socket_connect_timeout=1,
        socket_timeout=10,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
    )  # fmt: skip


async def initialize(cluster: RedisCluster) -> None:
    """Read the topology once, before any concurrent use. redis-py 8.1 initialises a cold
    client on its first commands, and several tasks doing that at once break each other's
    connections ("Connection lost", then `_writer` None: reproduced with 24 tasks on a cold
    client, never after one initialize()). Unreachable now: left to the first command."""
    with suppress(RedisError, RedisClusterException, OSError):
        await cluster.initialize()


def as_redis(cluster: RedisCluster) -> Redis:
    """The cluster client where code takes a Redis: every command it sends names one key
    (or none, like PUBLISH), which RedisCluster routes; multi-key scripts go per shard
    through `Primaries`."""
    return cast(Redis, cluster)


class Primaries:
    """A plain client per master, for what must run on one connection of the master that
    serves a slot: a script followed by WAIT (WAIT counts what this connection wrote).

    The topology is the cluster client's; after a connection error or a MOVED, `refresh`
    re-reads it (at most every `refresh_s`), so a promoted replica is found within that.
    """

    def __init__(self, cluster: RedisCluster, *, refresh_s: float = 0.2) -> None:
        self.cluster = cluster
        self.refresh_s = refresh_s
        self._clients: dict[tuple[str, int], Redis] = {}
        self._refreshed = -float("inf")
        self._lock = asyncio.Lock()

    def client(self, host: str, port: int) -> Redis:
        client = self._clients.get((host, port))
        if client is None:
            client = self._clients[(host, port)] = Redis(
                host=host,
                port=port,
                socket_connect_timeout=1,
                socket_timeout=10,
                # Never retried in place: the caller answers 503 and the client retries.
                retry=Retry(NoBackoff(), 0),
            )
        return client

    async def for_key(self, key: str) -> Redis:
        await self.cluster.initialize()  # once; a flag check afterwards
        node = self.cluster.get_node_from_key(key)
        if node is None:
            raise RedisClusterException(f"no master serves the slot of {key!r}")
        return self.client(node.host, int(node.port))

    async def masters(self) -> list[tuple[str, Redis]]:
        await self.cluster.initialize()
        nodes = self.cluster.get_primaries()
        return [(node.name, self.client(node.host, int(node.port))) for node in nodes]

    async def refresh(self) -> None:
        if time.monotonic() - self._refreshed < self.refresh_s or self._lock.locked():
            return
        async with self._lock:
            self._refreshed = time.monotonic()
            await self.cluster.nodes_manager.initialize()

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
