"""The dedupe + enqueue step on Redis Cluster: one script call per shard a request touches.

A request's events are split by shard (app/core/shards.py); each shard's part goes to the
master of its slot as one call of the same script as on one Redis (app/ingest/enqueue.py),
with the shard's stream and mark prefix, all in the slot of `{s<i>}`. The calls run
concurrently and each event's status is put back in request order. Before any call, the
backlog of every shard the request goes to is checked (429 naming the shard), so a refused
request has enqueued nothing.

With `replicated` durability the script and a `WAIT 1` share one connection to the
shard's master (a pipeline), so `accepted` or `duplicate` means a replica holds the entry
and the marks: a master SIGKILLed after the answer loses nothing once its replica is
promoted. A shard that fails (its master down before its replica takes over, a MOVED
while the topology changes, no replica confirming in time) fails the whole request with
a 503; the other shards' events of it are in their streams, so the retry is answered
`duplicate` for those, which is what a client retrying counts as delivered.
"""

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.core.errors import Unavailable
from app.core.keys import tenant_key
from app.core.metrics import SHARD_ENQUEUED
from app.core.redis import Primaries
from app.core.shards import Shard, route
from app.ingest.backpressure import ShardedBacklog
from app.ingest.enqueue import ENQUEUE_LUA, EventKey, ReplicaTimeout, marked, script_args

# A slot moving to another master (a failover being noticed, a resharding): the script did
# not run, so the call is made again on the new master, up to this many times.
_MOVES = 3


class ShardedEnqueuer:
    def __init__(
        self,
        cluster: RedisCluster,
        primaries: Primaries,
        shards: list[Shard],
        *,
        backlog: ShardedBacklog | None = None,
        replica_wait_ms: int | None = None,
        retry_after_s: int = 1,
    ) -> None:
        self.cluster = cluster
        self.primaries = primaries
        self.shards = shards
        self.backlog = backlog
        self.replica_wait_ms = replica_wait_ms
        self.retry_after_s = retry_after_s
        self._script = cluster.register_script(ENQUEUE_LUA)
        self._counters = [SHARD_ENQUEUED.labels(shard.label) for shard in shards]

    def shard_of(self, tenant: str, device: str) -> Shard:
        return self.shards[route(tenant, device, len(self.shards))]

    def prefix(self, shard: Shard, tenant: str) -> str:
        return tenant_key(shard.dedupe_prefix, tenant)

    async def enqueue(
        self,
        tenant: str,
        events: Sequence[EventKey],
        payloads: Sequence[bytes],
        window_s: int,
    ) -> list[bool]:
        """What Enqueuer.enqueue answers, one script call per shard the events go to."""
        if not events:
            return []
        parts: dict[int, list[int]] = {}
        count = len(self.shards)
        for position, key in enumerate(events):
            if len(key) != 3:
                raise ValueError("a sharded enqueue needs each event's device")
            parts.setdefault(route(tenant, key[2], count), []).append(position)
        if self.backlog is not None:
            await self.backlog.check_shards(parts)
        replies = await asyncio.gather(
            *(
                self._enqueue_shard(
                    self.shards[index],
                    tenant,
                    [events[p] for p in positions],
                    [payloads[p] for p in positions],
                    window_s,
                )
                for index, positions in parts.items()
            ),
            return_exceptions=True,
        )
        flags = [False] * len(events)
        for (index, positions), reply in zip(parts.items(), replies, strict=True):
            if isinstance(reply, BaseException):
                raise reply
            for position, fresh in zip(positions, reply, strict=True):
                flags[position] = fresh
            self._counters[index].inc(sum(reply))
        return flags

    async def _enqueue_shard(
        self,
        shard: Shard,
        tenant: str,
        events: Sequence[EventKey],
        payloads: Sequence[bytes],
        window_s: int,
    ) -> list[bool]:
        args = script_args(self.prefix(shard, tenant), tenant, events, payloads, window_s)
        for attempt in range(_MOVES + 1):
            try:
                result = await self._call(shard, args)
            except ResponseError as error:
                moved = str(error).startswith(("MOVED", "ASK"))
                if not moved or attempt == _MOVES:
                    if moved:
                        raise Unavailable(
                            f"shard {shard.label} is moving between masters; retry later",
                            headers={"Retry-After": str(self.retry_after_s)},
                        ) from error
                    raise
                await self._refresh()
                continue
            except (RedisConnectionError, RedisTimeoutError):
                # Its master is down or unreachable: the topology may show its replica
                # promoted by the client's retry.
                await self._refresh()
                raise
            return [flag == 1 for flag in result[1]]
        raise AssertionError("unreachable")

    async def _call(self, shard: Shard, args: list[Any]) -> Any:
        client = await self.primaries.for_key(shard.stream)
        if self.replica_wait_ms is None:
            return await self._script(keys=[shard.stream], args=args, client=client)
        async with client.pipeline(transaction=False) as pipe:
            await self._script(keys=[shard.stream, shard.sync_key], args=args, client=pipe)
            pipe.execute_command("WAIT", 1, self.replica_wait_ms)
            result, replicas = await pipe.execute()
        if int(replicas) < 1:
            raise ReplicaTimeout(
                f"no replica of shard {shard.label}'s master confirmed the append within "
                f"{self.replica_wait_ms} ms; a retry is safe (what is queued is answered "
                "duplicate)",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        return result

    async def _refresh(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.primaries.refresh()

    async def is_seen(self, tenant: str, device: str, event_id: str, ts_us: int) -> bool:
        """Whether the event's mark is set (for tests and tools)."""
        shard = self.shard_of(tenant, device)
        return await marked(self.cluster, self.prefix(shard, tenant), tenant, event_id, ts_us)
