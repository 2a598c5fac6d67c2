"""The dedupe + enqueue step: one Redis script per request appends its new events to the
ingest stream as one entry (newline-separated canonical JSON) and marks them seen.

The dedupe memory. An event's mark is a 64-bit hash of (tenant, event id), kept in a Redis
set of integers (an *intset*: 8 bytes a member while a set holds at most
`set-max-intset-entries`, 512 by default) for the minute of the event's own time. The sets
of one (tenant, minute) form a small tree: a base set, then 16 and 256 sets chosen by other
bits of the hash; a mark goes into the first set on its path with room (`SPILL_AT`
members), so a quiet minute costs one key and a busy one stays in compact sets, about
8-9 bytes an event in all (`python -m scripts.bench_dedupe`).

A set expires DEDUPE_WINDOW_S after the last mark written into it, so every mark lives at
least the window after its event arrived, as one key per event did, whatever the event's
own time (the seed walkthroughs post events from 2025); live traffic fills a minute's sets
within about a minute, so memory is the window's events. Two different ids collide only
with the same 64 bits on the same path: about one false duplicate in 10^9 days at 800
events/s.
"""

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from app.core.errors import Unavailable
from app.core.keys import tenant_key

SPILL_AT = 500
MINUTE_US = 60_000_000

# KEYS[1]: the stream; KEYS[2], optional: a key written when nothing is appended, so a WAIT
# after the call covers the marks it answered `duplicate` by (a call that writes nothing
# moves no replication offset, and WAIT would then vouch only for older writes of its own
# connection). ARGV: window_s, the tenant's key prefix, SPILL_AT, then per event: the
# minute of its time, its two path digits, its mark, its payload.
# Every check is made before the XADD and every mark is written after it, so no path marks
# an event seen without enqueuing it; the shebang makes Redis refuse the script up front
# when it is out of memory, before any write.
ENQUEUE_LUA = """#!lua
local window, prefix, spill = ARGV[1], ARGV[2], tonumber(ARGV[3])
local flags, fresh, marks, added, in_batch = {}, {}, {}, {}, {}
local function size(key)
  return redis.call('SCARD', key) + (added[key] or 0)
end
local e = 0
for i = 4, #ARGV, 5 do
  e = e + 1
  local minute, a, b, mark = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local id = minute .. ' ' .. mark
  local target = nil
  local new = not in_batch[id]
  if new then
    in_batch[id] = true
    local base = prefix .. ':' .. minute
    local path = {base, base .. ':' .. a, base .. ':' .. a .. ':' .. b}
    for level, key in ipairs(path) do
      if redis.call('SISMEMBER', key, mark) == 1 then
        new = false
        break
      end
      -- Sets only fill up: the first with room now is at or past where a mark went in.
      if level == #path or size(key) < spill then
        target = key
        break
      end
    end
  end
  if new then
    flags[e] = 1
    fresh[#fresh + 1] = ARGV[i + 4]
    marks[#marks + 1] = {target, mark}
    added[target] = (added[target] or 0) + 1
  else
    flags[e] = 0
  end
end
local id = ''
if #fresh > 0 then
  id = redis.call('XADD', KEYS[1], '*', 'n', #fresh, 'd', table.concat(fresh, '\\n'))
  local expiring = {}
  for _, m in ipairs(marks) do
    redis.call('SADD', m[1], m[2])
    if not expiring[m[1]] then
      expiring[m[1]] = true
      redis.call('EXPIRE', m[1], window)
    end
  end
elseif KEYS[2] then
  redis.call('INCR', KEYS[2])
end
return {id, flags}
"""


# (event id, ts in µs) or (event id, ts in µs, device id): the device routes an event to
# its shard on Redis Cluster (app/ingest/cluster.py); one Redis needs only the first two.
EventKey = tuple[str, int] | tuple[str, int, str]


def mark(tenant: str, event_id: str) -> tuple[int, int, int]:
    """The event's 64-bit mark and its two path digits (0-15), from one hash."""
    digest = hashlib.blake2b(tenant.encode() + b"\0" + event_id.encode(), digest_size=9).digest()
    return int.from_bytes(digest[:8], "big", signed=True), digest[8] >> 4, digest[8] & 15


def script_args(
    prefix: str, tenant: str, events: Sequence[EventKey], payloads: Sequence[bytes], window_s: int
) -> list[Any]:
    """ARGV of ENQUEUE_LUA for the events, with the tenant's mark prefix."""
    args: list[Any] = [window_s, prefix, SPILL_AT]
    for key, payload in zip(events, payloads, strict=True):
        member, a, b = mark(tenant, key[0])
        args += [key[1] // MINUTE_US, a, b, member, payload]
    return args


class ReplicaTimeout(Unavailable):
    """The events are in the stream, but no replica confirmed them in time."""


class Enqueuer:
    def __init__(
        self,
        redis: Redis,
        stream: str,
        dedupe_prefix: str,
        *,
        replica_wait_ms: int | None = None,
        retry_after_s: int = 1,
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.dedupe_prefix = dedupe_prefix
        self.replica_wait_ms = replica_wait_ms
        self.retry_after_s = retry_after_s
        self._enqueue = redis.register_script(ENQUEUE_LUA)

    def prefix(self, tenant: str) -> str:
        return tenant_key(self.dedupe_prefix, tenant)

    async def enqueue(
        self,
        tenant: str,
        events: Sequence[EventKey],
        payloads: Sequence[bytes],
        window_s: int,
    ) -> list[bool]:
        """Append the events (event id, ts in µs) not seen in the window; True for each one
        appended."""
        if not events:
            return []
        args = script_args(self.prefix(tenant), tenant, events, payloads, window_s)
        if self.replica_wait_ms is None:
            result: Any = await self._enqueue(keys=[self.stream], args=args)
        else:
            result = await self._enqueue_replicated(args)
        return [flag == 1 for flag in result[1]]

    async def _enqueue_replicated(self, args: list[Any]) -> Any:
        # WAIT covers the writes of its own connection: the script and WAIT share a pipeline.
        # A call that appends nothing (all duplicates) writes the sync key instead, so the
        # WAIT also covers the earlier append its `duplicate` answers vouch for.
        async with self.redis.pipeline(transaction=False) as pipe:
            await self._enqueue(keys=[self.stream, f"{self.stream}:sync"], args=args, client=pipe)
            pipe.execute_command("WAIT", 1, self.replica_wait_ms)
            result, replicas = await pipe.execute()
        if int(replicas) < 1:
            raise ReplicaTimeout(
                f"no replica confirmed the append within {self.replica_wait_ms} ms; the events "
                "are queued, so a retry is safe (it is answered duplicate)",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        return result

    async def is_seen(self, tenant: str, event_id: str, ts_us: int) -> bool:
        """Whether the event's mark is set (for tests and tools)."""
        return await marked(self.redis, self.prefix(tenant), tenant, event_id, ts_us)


async def marked(
    redis: Redis | RedisCluster, prefix: str, tenant: str, event_id: str, ts_us: int
) -> bool:
    """Whether the event's mark is set under a dedupe prefix, in any set on its path."""
    member, a, b = mark(tenant, event_id)
    base = f"{prefix}:{ts_us // MINUTE_US}"
    for key in (base, f"{base}:{a}", f"{base}:{a}:{b}"):
        if await redis.sismember(key, str(member)):
            return True
    return False
