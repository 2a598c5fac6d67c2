"""The dedupe memory: compact sets per (tenant, minute), spilling down a path, exact."""

from typing import Any

from redis.asyncio import Redis

from app.core.settings import Settings
from app.ingest.enqueue import SPILL_AT, Enqueuer

MINUTE_US = 1_748_772_000_000_000  # 2025-06-01T10:00:00Z: older than the window on purpose


async def test_every_resent_event_is_a_duplicate_across_spilled_sets(
    redis: Redis, settings: Settings
) -> None:
    enqueuer = Enqueuer(redis, settings.stream, settings.dedupe_prefix)
    count = SPILL_AT * 10  # past the base set, into the 16 sets of the second level
    keys = [(f"e{i}", MINUTE_US + i) for i in range(count)]
    first = await enqueuer.enqueue("t", keys, [b"{}"] * count, 3600)
    assert all(first)
    again = await enqueuer.enqueue("t", keys, [b"{}"] * count, 3600)
    assert not any(again)
    # Another tenant's identical ids are its own.
    other = await enqueuer.enqueue("u", keys[:10], [b"{}"] * 10, 3600)
    assert all(other)
    sets = [key async for key in redis.scan_iter(match=f"{settings.dedupe_prefix}:{{t}}:*")]
    assert 1 < len(sets) <= 17
    for key in sets:
        encoding: Any = await redis.object("encoding", key)
        assert encoding in (b"intset", "intset"), key
        assert await redis.scard(key) <= SPILL_AT
        ttl = await redis.ttl(key)
        assert 3500 < ttl <= 3600  # the window from the last mark, whatever the event's time


async def test_duplicates_inside_one_request_are_caught(redis: Redis, settings: Settings) -> None:
    enqueuer = Enqueuer(redis, settings.stream, settings.dedupe_prefix)
    keys = [("a", MINUTE_US), ("b", MINUTE_US), ("a", MINUTE_US)]
    assert await enqueuer.enqueue("t", keys, [b"1", b"2", b"3"], 60) == [True, True, False]
    entries: Any = await redis.xrange(settings.stream)
    assert len(entries) == 1 and entries[0][1][b"n"] == b"2"
    assert await enqueuer.is_seen("t", "a", MINUTE_US)
    assert not await enqueuer.is_seen("t", "c", MINUTE_US)
