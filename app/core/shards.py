"""Sharded ingest streams on Redis Cluster: which shard an event goes to, each shard's keys.

With REDIS_CLUSTER_URL set, the ingest stream is STREAM_SHARDS streams. An event goes to
shard blake2b(tenant, device) mod STREAM_SHARDS, and every key of a shard carries the hash
tag `{s<i>.<k>}` (`tag`): its stream (and consumer group), the dedupe marks of its events, its
dead-letter stream, and the alert stream and alert states of its devices. So one script
call per shard touches one slot, as one call per request did on one Redis.

Every version of a (tenant, device, ts) passes through its device's stream, so that
stream's ids still order them (`seq`, latest-write-wins), whatever the other streams do;
nothing compares `seq` across devices. The dedupe mark of an event lives in its device's
shard: an event id is one event of one device, so a retry finds its mark (the same id sent
for another device of the tenant is not recognised as a duplicate, unlike on one Redis).
"""

import hashlib
import itertools
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from redis.crc import key_slot

from app.core.settings import Settings


def route(tenant: str, device: str, shards: int) -> int:
    """The shard of a device: stable across processes and restarts (not Python's hash)."""
    digest = hashlib.blake2b(tenant.encode() + b"\0" + device.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


SLOTS = 16384


@lru_cache(maxsize=4096)
def tag(index: int, count: int) -> str:
    """Shard `index` of `count`'s hash tag, `{s<index>.<k>}`: the first k whose slot lies in
    the index-th of `count` equal slot ranges. A cluster created with its slots split evenly
    (redis-cli --cluster create) then serves the same number of shards on each master when
    `count` is a multiple of the masters (plain `{s<i>}` put 4 of 6 on one master of 3)."""
    low, high = index * SLOTS // count, (index + 1) * SLOTS // count
    for k in itertools.count():
        candidate = f"s{index}.{k}"
        if low <= key_slot(candidate.encode()) < high:
            return "{" + candidate + "}"
    raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class Shard:
    """One shard's keys, all in the slot of its hash tag."""

    index: int
    stream: str
    dead_letter_stream: str
    # Marks: `dedupe_prefix:{tenant}:minute...`; the first `{...}` of a key is its hash tag,
    # so the shard's tag comes first and the (encoded) tenant stays in the name.
    dedupe_prefix: str
    alert_stream: str
    alert_state_prefix: str
    # Written by a call that appended nothing, so a WAIT after it covers the marks it
    # answered `duplicate` by (app/ingest/enqueue.py).
    sync_key: str

    @property
    def label(self) -> str:
        return f"s{self.index}"


def shard(settings: Settings, index: int) -> Shard:
    t = tag(index, settings.stream_shards)
    return Shard(
        index=index,
        stream=f"{settings.stream}:{t}",
        dead_letter_stream=f"{settings.dead_letter_stream}:{t}",
        dedupe_prefix=f"{settings.dedupe_prefix}:{t}",
        alert_stream=f"{settings.alert_stream}:{t}",
        alert_state_prefix=f"{settings.alert_state_prefix}:{t}",
        sync_key=f"{settings.stream}:sync:{t}",
    )


def all_shards(settings: Settings) -> list[Shard]:
    return [shard(settings, index) for index in range(settings.stream_shards)]


def dead_letter_streams(settings: Settings) -> list[str]:
    """Every dead-letter stream: each shard's on Redis Cluster, else the one."""
    if settings.redis_cluster_url:
        return [s.dead_letter_stream for s in all_shards(settings)]
    return [settings.dead_letter_stream]


def assigned(settings: Settings) -> list[Shard]:
    """The shards a worker consumes: WORKER_SHARDS ("0,2", "0-3", "0-1,5"), else all."""
    text = settings.worker_shards.strip()
    if not text:
        return all_shards(settings)
    chosen: set[int] = set()
    for item in text.split(","):
        first, sep, last = item.strip().partition("-")
        if not first.isdigit() or (sep and not last.isdigit()):
            raise ValueError(f"WORKER_SHARDS: not a shard or range: {item!r}")
        span = range(int(first), int(last if sep else first) + 1)
        if not span or span[-1] >= settings.stream_shards:
            raise ValueError(f"WORKER_SHARDS: {item!r} is outside 0-{settings.stream_shards - 1}")
        chosen.update(span)
    return [shard(settings, index) for index in sorted(chosen)]


def startup_nodes(url: str) -> list[tuple[str, int]]:
    """REDIS_CLUSTER_URL as (host, port) pairs: "redis://h:p,h:p" or "h:p,h:p"."""
    nodes: list[tuple[str, int]] = []
    for item in url.split(","):
        item = item.strip()
        if not item:
            continue
        parts = urlsplit(item if "://" in item else f"redis://{item}")
        nodes.append((parts.hostname or "127.0.0.1", parts.port or 6379))
    if not nodes:
        raise ValueError(f"REDIS_CLUSTER_URL names no node: {url!r}")
    return nodes
