"""The Redis stream that carries accepted events from the API to the workers.

An entry holds one request's new events as newline-separated canonical JSON, so a
batch costs one entry, not one per event.
"""

import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

# Marks each new event id seen and appends the new events in one step. Checking first and
# writing the marks only after XADD succeeded means no path marks an event seen without
# enqueuing it; the shebang makes Redis refuse the script up front when out of memory,
# before any write.
ENQUEUE_LUA = """#!lua
local window = ARGV[1]
local flags = {}
local fresh = {}
local fresh_keys = {}
local in_batch = {}
for i = 2, #KEYS do
  local key = KEYS[i]
  if in_batch[key] or redis.call('EXISTS', key) == 1 then
    flags[i - 1] = 0
  else
    in_batch[key] = true
    flags[i - 1] = 1
    fresh[#fresh + 1] = ARGV[i]
    fresh_keys[#fresh_keys + 1] = key
  end
end
local id = ''
if #fresh > 0 then
  id = redis.call('XADD', KEYS[1], '*', 'n', #fresh, 'd', table.concat(fresh, '\\n'))
  for _, key in ipairs(fresh_keys) do
    redis.call('SET', key, '1', 'EX', window)
  end
end
return {id, flags}
"""


def seen_key(prefix: str, tenant: str, event_id: str) -> str:
    return f"{prefix}:{tenant}:{event_id}"


def entry_seq(entry_id: bytes | str) -> int:
    """A stream entry id as one integer that keeps the ids' total order."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms) * 1_000_000 + int(seq or 0)


@dataclass(frozen=True, slots=True)
class Backlog:
    entries: int
    oldest_age_s: float


class EventStream:
    def __init__(self, redis: Redis, stream: str, group: str, dedupe_prefix: str) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.dedupe_prefix = dedupe_prefix
        self._enqueue = redis.register_script(ENQUEUE_LUA)

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def enqueue(
        self, tenant: str, event_ids: list[str], payloads: list[bytes], window_s: int
    ) -> list[bool]:
        """Append the events not seen in the window; True for each one appended."""
        if not event_ids:
            return []
        keys = [self.stream, *(seen_key(self.dedupe_prefix, tenant, e) for e in event_ids)]
        result: Any = await self._enqueue(keys=keys, args=[window_s, *payloads])
        return [flag == 1 for flag in result[1]]

    async def backlog(self) -> Backlog:
        """Entries not yet acknowledged by the group, and the age of the oldest of them."""
        try:
            groups: Any = await self.redis.xinfo_groups(self.stream)
        except ResponseError as error:
            if "no such key" in str(error).lower():
                return Backlog(0, 0.0)
            raise
        info = next((g for g in groups if _text(g["name"]) == self.group), None)
        if info is None:
            return Backlog(0, 0.0)
        pending = int(info["pending"])
        lag = info.get("lag")
        last = _text(info["last-delivered-id"])
        oldest: list[str] = []
        if pending:
            summary: Any = await self.redis.xpending(self.stream, self.group)
            # Acknowledged between the two calls: nothing pending any more.
            if summary["min"] is not None:
                oldest.append(_text(summary["min"]))
        undelivered: Any = await self.redis.xrange(self.stream, min=f"({last}", count=1)
        if undelivered:
            oldest.append(_text(undelivered[0][0]))
        if lag is None:
            # Redis cannot tell the lag after deletions; count what is left past the cursor.
            rest: Any = await self.redis.xrange(self.stream, min=f"({last}", count=100_000)
            lag = len(rest)
        age = 0.0
        if oldest:
            first_ms = min(int(entry.partition("-")[0]) for entry in oldest)
            age = max(0.0, time.time() - first_ms / 1000)
        return Backlog(pending + int(lag), age)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
