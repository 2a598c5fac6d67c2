-- wrk script: unique seed-004 events, one per request or `per_request` to a batch.
-- wrk -t2 -c16 -d20s -s scripts/wrk/events.lua URL -- PER_REQUEST
-- Each thread numbers its own events; ids carry the run and thread, so runs never collide.
-- Timestamps are naive ISO 8601 (both APIs take them) and advance a millisecond per event.
local threads = {}
local counter, per_request, prefix, base_s = 0, 1, "r", 0

function setup(thread)
  thread:set("tid", #threads + 1)
  thread:set("run", string.format("%x%04x", os.time(), math.random(0, 65535)))
  table.insert(threads, thread)
end

function init(args)
  per_request = tonumber(args[1] or "1")
  prefix = string.format("%s-t%d", run, tid)
  math.randomseed(os.time() * 1000 + tid)
  base_s = os.time() - 3600
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.path = per_request > 1 and "/v1/events/batch" or "/v1/events"
end

local function event()
  counter = counter + 1
  local ts = os.date("!%Y-%m-%dT%H:%M:%S", base_s + math.floor(counter / 1000))
    .. string.format(".%03d", counter % 1000)
  return string.format(
    '{"event_id":"%s-%d","device_id":"device-%03d","timeStamp":"%s",' ..
    '"metrics":{"temp":%.2f,"cpu":%.3f,"hum":%.1f},"tags":["room:101","sensor:v2"]}',
    prefix, counter, math.random(0, 99), ts,
    15 + math.random() * 25, math.random(), 30 + math.random() * 40)
end

function request()
  local body
  if per_request > 1 then
    local items = {}
    for i = 1, per_request do items[i] = event() end
    body = "[" .. table.concat(items, ",") .. "]"
  else
    body = event()
  end
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  io.write(string.format("requests=%d duration_us=%d errors=%d non2xx=%d\n",
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
  io.write(string.format("p50_ms=%.3f p99_ms=%.3f\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
