"""The dedupe + enqueue step: one Redis script per request appends its new events to the
ingest stream as one entry (newline-separated canonical JSON) and marks them seen.
"""

from typing import Any

from redis.asyncio import Redis

from app.core.keys import tenant_key

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
    return tenant_key(prefix, tenant, event_id)


class Enqueuer:
    def __init__(self, redis: Redis, stream: str, dedupe_prefix: str) -> None:
        self.redis = redis
        self.stream = stream
        self.dedupe_prefix = dedupe_prefix
        self._enqueue = redis.register_script(ENQUEUE_LUA)

    async def enqueue(
        self, tenant: str, event_ids: list[str], payloads: list[bytes], window_s: int
    ) -> list[bool]:
        """Append the events not seen in the window; True for each one appended."""
        if not event_ids:
            return []
        keys = [self.stream, *(seen_key(self.dedupe_prefix, tenant, e) for e in event_ids)]
        result: Any = await self._enqueue(keys=keys, args=[window_s, *payloads])
        return [flag == 1 for flag in result[1]]
