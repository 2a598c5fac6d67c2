"""Events accepted per second, fleet-wide, from a rolling counter in Redis.

Each API process adds what it accepted since its last flush (its own
`telemetry_events_total{status="accepted"}`, so the ingest path does no extra work) to the
counter of the current second, once per INGEST_RATE_FLUSH_S; a counter expires after the
longest window it can serve. The rate over a window is the sum of its seconds' counters
over its length: one MGET, whatever the traffic. Stream ids would not do: an entry holds
many events, and entries are trimmed soon after they are acknowledged.
"""

import asyncio
import contextlib
import math
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.core.metrics import EVENTS

KEEP_S = 660


def accepted_total() -> float:
    """This process's accepted events so far (the Prometheus counter)."""
    for family in EVENTS.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("status") == "accepted":
                return sample.value
    return 0.0


class IngestRate:
    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        read_total: Callable[[], float] = accepted_total,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.read_total = read_total
        self.clock = clock
        # What this process accepted before it started is nobody's current rate.
        self._flushed = read_total()
        self._lock = asyncio.Lock()

    def _key(self, second: int) -> str:
        return f"{self.prefix}:{second}"

    async def flush(self) -> None:
        """Add what was accepted since the last flush to the current second's counter."""
        async with self._lock:
            total = self.read_total()
            delta = int(total - self._flushed)
            if delta <= 0:
                return
            key = self._key(math.floor(self.clock()))
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.incrby(key, delta)
                pipe.expire(key, KEEP_S)
                await pipe.execute()
            self._flushed += delta

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        """Flush every interval until stopped; a Redis fault keeps the count for the next."""
        while not stop.is_set():
            with contextlib.suppress(RedisError, OSError):
                await self.flush()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
        with contextlib.suppress(RedisError, OSError):
            await self.flush()

    async def per_second(self, window_s: int) -> float:
        """Events accepted per second over the last window_s seconds (the current one
        included, so a flush shows at once)."""
        now = math.floor(self.clock())
        keys = [self._key(second) for second in range(now - window_s + 1, now + 1)]
        counts = await self.redis.mget(keys)
        return round(sum(int(c) for c in counts if c is not None) / window_s, 3)
