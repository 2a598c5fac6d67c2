"""The capped Redis stream of alert transitions, and the script that makes them.

Each script call (one per batch, or per chunk of a large one) walks the observations of
every (rule, device) in event-time order through the state machine ok → pending → firing
→ ok. A transition updates the state, appends the notification to the stream and
publishes it, all inside the script, so Redis runs it as one step: of two workers racing
on the same device one makes the transition and the other sees it made. Observations at
or before the last event time applied to a (rule, device) are skipped, so a replayed batch
notifies nothing twice.
"""

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from app.core.keys import tenant_key
from app.core.streams import StreamId, ensure_group, parse_id, text

# KEYS[1]: the alert stream; KEYS[1 + k]: the state of (rule, device) k, a string
# "state|since|last|fired" (event times in epoch microseconds).
# ARGV: channel, maxlen, ttl; R, then per rule: for_us, cooldown_us, the payload's end;
# K, the rule of each key as one string "r r ...", then per key its device as JSON;
# E, then per event its part of the payload; then every observation in one string of
# "key ts class event" groups, class b (breach), h (hysteresis band) or c (clear).
# Few arguments and one MGET keep a call cheap for a batch of thousands of observations.
TRANSITION_LUA = """#!lua
local channel, maxlen, ttl = ARGV[1], ARGV[2], ARGV[3]
local p = 4
local rules = {}
for r = 1, tonumber(ARGV[p]) do
  rules[r] = {tonumber(ARGV[p + 1]), tonumber(ARGV[p + 2]), ARGV[p + 3]}
  p = p + 3
end
local nkeys = tonumber(ARGV[p + 1])
local key_rule = {}
for r in string.gmatch(ARGV[p + 2], '%d+') do
  key_rule[#key_rule + 1] = tonumber(r)
end
local devices = {}
p = p + 3
for k = 1, nkeys do
  devices[k] = ARGV[p]
  p = p + 1
end
local events = {}
for e = 1, tonumber(ARGV[p]) do
  events[e] = ARGV[p + e]
end
local observations = ARGV[p + tonumber(ARGV[p]) + 1]
local stored = {}
for first = 1, nkeys, 1000 do
  local part = redis.call('MGET', unpack(KEYS, first + 1, math.min(first + 999, nkeys) + 1))
  for n = 1, #part do
    stored[first + n - 1] = part[n]
  end
end
local states = {}
local out = {}
local function emit(k, state, e)
  local rule = rules[key_rule[k]]
  local payload = '{"device_id":' .. devices[k] .. events[e] .. ',"state":"' .. state .. '"'
    .. rule[3]
  local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'd', payload)
  redis.call('PUBLISH', channel, id .. ' ' .. payload)
  out[#out + 1] = id
  out[#out + 1] = state
end
for k, ts, class, e in string.gmatch(observations, '(%d+) (%d+) (%a) (%d+)') do
  k = tonumber(k)
  ts = tonumber(ts)
  local s = states[k]
  if s == nil then
    local state, since, last, fired =
      string.match(stored[k] or 'ok|||', '^(%a+)|(%d*)|(%d*)|(%d*)$')
    s = {state = state, since = tonumber(since), last = tonumber(last), fired = tonumber(fired)}
    states[k] = s
  end
  if s.last == nil or ts > s.last then
    s.last = ts
    s.dirty = true
    local rule = rules[key_rule[k]]
    if s.state == 'firing' then
      if class == 'c' then
        s.state = 'ok'
        emit(k, 'resolved', tonumber(e))
      end
    elseif class == 'b' then
      local entered = false
      if s.state ~= 'pending' then
        s.state = 'pending'
        s.since = ts
        entered = true
      end
      if ts - s.since >= rule[1] and (s.fired == nil or ts - s.fired >= rule[2]) then
        s.state = 'firing'
        s.fired = ts
        emit(k, 'firing', tonumber(e))
      elseif entered then
        emit(k, 'pending', tonumber(e))
      end
    elseif s.state == 'pending' then
      s.state = 'ok'
      emit(k, 'cancelled', tonumber(e))
    end
  end
end
local function num(x)
  if x == nil then return '' end
  return string.format('%.0f', x)
end
for k, s in pairs(states) do
  if s.dirty then
    redis.call('SET', KEYS[k + 1], s.state .. '|' .. num(s.since) .. '|' .. num(s.last) .. '|'
      .. num(s.fired), 'EX', ttl)
  end
end
return out
"""


# A predicted-breach rule's state on one device (or site): "predicted|version" or
# "ok|version", version being the model whose forecast decided it.
# KEYS[1]: the alert stream, KEYS[2]: the state. ARGV: channel, maxlen, ttl, the model
# version, the verdict (b: the forecast crosses, h: within the clear band, c: clear), the
# predicted payload, the resolved payload. A verdict from an older model than the one that
# decided the state is ignored, so two forecasters racing (or a late scheduled pass) never
# undo a newer forecast; the same verdict again notifies nothing.
PREDICTED_LUA = """#!lua
local stored = redis.call('GET', KEYS[2])
local state, version = 'ok', 0
if stored then
  local s, v = string.match(stored, '^(%a+)|(%d+)$')
  state, version = s, tonumber(v)
end
local model = tonumber(ARGV[4])
if model < version then
  return {}
end
local new = state
if ARGV[5] == 'b' then
  new = 'predicted'
elseif ARGV[5] == 'c' then
  new = 'ok'
end
local out = {}
if new ~= state then
  local payload, label = ARGV[7], 'resolved'
  if new == 'predicted' then
    payload, label = ARGV[6], 'predicted'
  end
  local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'd', payload)
  redis.call('PUBLISH', ARGV[1], id .. ' ' .. payload)
  out = {id, label}
end
redis.call('SET', KEYS[2], new .. '|' .. string.format('%d', model), 'EX', ARGV[3])
return out
"""


def state_key(prefix: str, tenant: str, rule_id: int, device: str) -> str:
    return tenant_key(prefix, tenant, str(rule_id), device)


@dataclass(frozen=True, slots=True)
class Position:
    """What the stream holds: its newest id, its oldest entry, and the newest id deleted."""

    last: StreamId
    first: StreamId | None
    max_deleted: StreamId
    exists: bool

    def lost_after(self, requested: StreamId) -> bool:
        """Whether entries after `requested` may be gone (trimmed or deleted).

        Trimming keeps no record of what it removed, so an id older than the oldest entry
        counts as lost even when nothing lay between the two.
        """
        if self.max_deleted > requested:
            return True
        if self.first is None:
            return requested < self.last
        return requested < self.first


class AlertStream:
    def __init__(self, redis: Redis, stream: str, channel: str, maxlen: int, ttl_s: int) -> None:
        self.redis = redis
        self.stream = stream
        self.channel = channel
        self.maxlen = maxlen
        self.ttl_s = ttl_s
        self._transition = redis.register_script(TRANSITION_LUA)
        self._predicted = redis.register_script(PREDICTED_LUA)

    async def transition(self, keys: list[str], args: list[Any]) -> list[tuple[str, str]]:
        """Run the state machine; (alert id, state) of each transition made."""
        reply: Any = await self._transition(
            keys=[self.stream, *keys], args=[self.channel, self.maxlen, self.ttl_s, *args]
        )
        flat = [text(item) for item in reply]
        return list(zip(flat[::2], flat[1::2], strict=True))

    async def predicted(
        self, key: str, version: int, verdict: str, predicted: bytes, resolved: bytes
    ) -> tuple[str, str] | None:
        """Move a predicted-breach state by a forecast's verdict; (alert id, state) when it
        moved (notified on the stream and channel in the same step), else None."""
        reply: Any = await self._predicted(
            keys=[self.stream, key],
            args=[self.channel, self.maxlen, self.ttl_s, version, verdict, predicted, resolved],
        )
        if not reply:
            return None
        return text(reply[0]), text(reply[1])

    async def position(self) -> Position:
        try:
            info: Any = await self.redis.xinfo_stream(self.stream)
        except ResponseError as error:
            if "no such key" not in str(error).lower():
                raise
            return Position((0, 0), None, (0, 0), exists=False)
        first = info.get("first-entry")
        return Position(
            last=parse_id(text(info["last-generated-id"])),
            first=parse_id(text(first[0])) if first else None,
            max_deleted=parse_id(text(info.get("max-deleted-entry-id") or "0-0")),
            exists=True,
        )

    async def read_after(self, after: StreamId, count: int) -> list[tuple[str, bytes]]:
        """Entries strictly after an id, oldest first."""
        reply: Any = await self.redis.xrange(
            self.stream, min=f"({after[0]}-{after[1]}", max="+", count=count
        )
        return [(text(entry_id), fields[b"d"]) for entry_id, fields in reply if fields]

    async def ensure_group(self, group: str) -> None:
        await ensure_group(self.redis, self.stream, group)
