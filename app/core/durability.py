"""How durable the queue is: read from Redis's own settings, as a level.

- `volatile`: no AOF (snapshots or nothing): a restart loses what is queued.
- `os-buffered`: AOF with `appendfsync everysec` (or `no`): Redis writes every command
  before it answers, so a Redis crash loses nothing; a power loss or kernel crash can drop
  up to about a second.
- `fsync`: AOF with `appendfsync always`: on disk before the answer.
- `replicated`: a replica acknowledges the append (`WAIT`) before the answer; the replica
  itself may be at any of the levels above.

An evicting `maxmemory-policy` is refused whatever the level: it may drop queued events or
dedupe marks to make room.
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

Level = Literal["volatile", "os-buffered", "fsync", "replicated"]
LEVELS: tuple[Level, ...] = ("volatile", "os-buffered", "fsync", "replicated")


@dataclass(frozen=True, slots=True)
class Durability:
    level: Level
    appendonly: str
    appendfsync: str
    maxmemory_policy: str
    replicas: int
    reason: str

    @property
    def evicting(self) -> bool:
        return self.maxmemory_policy not in ("noeviction", "unknown")

    def meets(self, required: Level) -> bool:
        return not self.evicting and LEVELS.index(self.level) >= LEVELS.index(required)

    def refusal(self, required: Level) -> str | None:
        """Why ingest must refuse on this queue, with what to set; None when it need not."""
        if self.evicting:
            return (
                f"the queue's Redis evicts keys under memory pressure (maxmemory-policy "
                f"{self.maxmemory_policy}); set maxmemory-policy noeviction"
            )
        if LEVELS.index(self.level) < LEVELS.index(required):
            fix = {
                "os-buffered": "set appendonly yes (appendfsync everysec)",
                "fsync": "set appendonly yes and appendfsync always",
                "replicated": "attach a replica (replicaof) and keep it connected",
            }[required]
            return f"the queue is {self.level} ({self.reason}) but {required} is required; {fix}"
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def probe(redis: Redis, *, replicated: bool = False) -> Durability:
    """Read appendonly, appendfsync, maxmemory-policy and the connected replicas."""
    try:
        config: Any = await redis.config_get("appendonly")
        config |= await redis.config_get("appendfsync")
        config |= await redis.config_get("maxmemory-policy")
    except ResponseError as error:
        # CONFIG renamed or forbidden (managed Redis): what cannot be read is not assumed.
        return Durability("volatile", "unknown", "unknown", "unknown", 0, f"CONFIG GET: {error}")
    settings = {_text(k): _text(v) for k, v in config.items()}
    info: Any = await redis.info("replication")
    replicas = int(info.get("connected_slaves", 0))
    appendonly = settings.get("appendonly", "no")
    appendfsync = settings.get("appendfsync", "everysec")
    policy = settings.get("maxmemory-policy", "noeviction")
    level: Level
    if appendonly != "yes":
        level, reason = "volatile", "appendonly no"
    elif appendfsync == "always":
        level, reason = "fsync", "appendfsync always"
    else:
        level, reason = "os-buffered", f"appendfsync {appendfsync}"
    if replicated and replicas > 0:
        level, reason = "replicated", f"{reason}, {replicas} replica(s) acknowledge with WAIT"
    return Durability(level, appendonly, appendfsync, policy, replicas, reason)


async def probe_masters(
    masters: Sequence[tuple[str, Redis]], *, replicated: bool = False
) -> Durability:
    """A cluster's durability: its weakest master's, named in the reason (every shard must
    meet the level). A master that does not answer is left out: its shards answer 503 from
    the enqueue itself until its replica is promoted, and the others keep serving."""
    found: list[tuple[str, Durability]] = []
    errors: list[BaseException] = []
    for name, client in masters:
        try:
            found.append((name, await probe(client, replicated=replicated)))
        except (RedisError, OSError) as error:
            errors.append(error)
    if not found:
        raise errors[0] if errors else RedisError("the cluster has no master")

    def weakness(item: tuple[str, Durability]) -> tuple[bool, int, int]:
        durability = item[1]
        return (not durability.evicting, LEVELS.index(durability.level), durability.replicas)

    name, weakest = min(found, key=weakness)
    return replace(weakest, reason=f"{name}: {weakest.reason}")
