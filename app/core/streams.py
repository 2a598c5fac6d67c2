"""Redis streams as the API and the workers share them: ids, groups, replies, backlog.

The ingest stream carries accepted events from the API to the workers; the alert stream
carries alert transitions to the history writer and the SSE clients.
"""

import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

StreamId = tuple[int, int]


def text(value: bytes | str) -> str:
    """A Redis reply item as text (clients may or may not decode replies)."""
    return value.decode() if isinstance(value, bytes) else value


def parse_id(value: str) -> StreamId:
    """A stream entry id as a comparable pair; ValueError when it is not one."""
    ms, sep, seq = value.strip().partition("-")
    if not ms.isdigit() or (sep and not seq.isdigit()):
        raise ValueError(f"not a stream id: {value!r}")
    return int(ms), int(seq or 0)


def entry_seq(entry_id: bytes | str) -> int:
    """A stream entry id as one integer that keeps the ids' total order."""
    ms, seq = parse_id(text(entry_id))
    return ms * 1_000_000 + seq


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create the consumer group (and the stream) unless it exists."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


@dataclass(frozen=True, slots=True)
class Backlog:
    entries: int
    oldest_age_s: float


class EventStream:
    """The ingest stream and its consumer group."""

    def __init__(self, redis: Redis, stream: str, group: str) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group

    async def ensure_group(self) -> None:
        await ensure_group(self.redis, self.stream, self.group)

    async def backlog(self) -> Backlog:
        """Entries not yet acknowledged by the group, and the age of the oldest of them."""
        try:
            groups: Any = await self.redis.xinfo_groups(self.stream)
        except ResponseError as error:
            if "no such key" in str(error).lower():
                return Backlog(0, 0.0)
            raise
        info = next((g for g in groups if text(g["name"]) == self.group), None)
        if info is None:
            return Backlog(0, 0.0)
        pending = int(info["pending"])
        lag = info.get("lag")
        last = text(info["last-delivered-id"])
        oldest: list[str] = []
        if pending:
            summary: Any = await self.redis.xpending(self.stream, self.group)
            # Acknowledged between the two calls: nothing pending any more.
            if summary["min"] is not None:
                oldest.append(text(summary["min"]))
        undelivered: Any = await self.redis.xrange(self.stream, min=f"({last}", count=1)
        if undelivered:
            oldest.append(text(undelivered[0][0]))
        if lag is None:
            # Redis cannot tell the lag after deletions; count what is left past the cursor.
            rest: Any = await self.redis.xrange(self.stream, min=f"({last}", count=100_000)
            lag = len(rest)
        age = 0.0
        if oldest:
            first_ms = min(int(entry.partition("-")[0]) for entry in oldest)
            age = max(0.0, time.time() - first_ms / 1000)
        return Backlog(pending + int(lag), age)
