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


# The group's pending count and lag (-1 when Redis cannot tell), its oldest pending id, the
# first id past its cursor, and the stream's length; all read in one atomic step.
BACKLOG_LUA = """#!lua flags=no-writes
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {0, 0, '', '', 0}
end
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = {}
  for i = 1, #group, 2 do
    info[group[i]] = group[i + 1]
  end
  if info['name'] == ARGV[1] then
    local oldest = ''
    if info['pending'] > 0 then
      oldest = redis.call('XPENDING', KEYS[1], ARGV[1])[2] or ''
    end
    local after = redis.call('XRANGE', KEYS[1], '(' .. info['last-delivered-id'], '+', 'COUNT', 1)
    local first = ''
    if #after > 0 then
      first = after[1][1]
    end
    local lag = info['lag']
    if not lag then
      lag = -1
    end
    return {info['pending'], lag, oldest, first, redis.call('XLEN', KEYS[1])}
  end
end
return {0, 0, '', '', 0}
"""


@dataclass(frozen=True, slots=True)
class Backlog:
    entries: int
    oldest_age_s: float
    # The stream's length (entries kept, acknowledged or not), from the same snapshot.
    length: int = 0


@dataclass(frozen=True, slots=True)
class Consumer:
    name: str
    pending: int
    idle_ms: int


class EventStream:
    """The ingest stream and its consumer group."""

    def __init__(self, redis: Redis, stream: str, group: str) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self._backlog = redis.register_script(BACKLOG_LUA)

    async def ensure_group(self) -> None:
        await ensure_group(self.redis, self.stream, self.group)

    async def backlog(self) -> Backlog:
        """Entries not yet acknowledged by the group, and the age of the oldest of them.

        One script call, so one snapshot: workers acking between two round trips cannot
        make the parts disagree, and no entry is ever read to count them.
        """
        reply: Any = await self._backlog(keys=[self.stream], args=[self.group])
        pending, lag, oldest_pending, first_undelivered, length = reply
        pending = int(pending)
        # Redis cannot tell the lag after some deletions: the stream's length bounds it.
        waiting = int(lag) if int(lag) >= 0 else max(0, int(length) - pending)
        oldest = [text(i) for i in (oldest_pending, first_undelivered) if i]
        age = 0.0
        if oldest:
            first_ms = min(parse_id(entry)[0] for entry in oldest)
            age = max(0.0, time.time() - first_ms / 1000)
        return Backlog(pending + waiting, age, int(length))

    async def consumers(self) -> list[Consumer]:
        """The group's consumers with their pending entries and idle time; none when the
        stream or the group does not exist yet."""
        try:
            reply: Any = await self.redis.xinfo_consumers(self.stream, self.group)
        except ResponseError as error:
            if "NOGROUP" in str(error) or "no such key" in str(error):
                return []
            raise
        return [
            Consumer(text(c["name"]), int(c["pending"]), int(c["idle"]))
            for c in sorted(reply, key=lambda c: text(c["name"]))
        ]
