"""Whether ingest may answer `accepted` now: a durable enough queue, and room in the backlog.

The queue's durability is read at start and again at most every DURABILITY_CHECK_INTERVAL_S
(so a Redis restarted with other settings, or a reconnect to another one, is seen within
that bound); the check costs no round trip per request.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from app.core.durability import Durability, Level, probe
from app.core.errors import Unavailable
from app.core.metrics import QUEUE_DURABILITY
from app.core.tenancy import Identity
from app.ingest.backpressure import BacklogGate, ShardedBacklog
from app.ingest.ratelimit import TenantLimiter

log = logging.getLogger("app.ingest")


class DurabilityGate:
    def __init__(
        self,
        redis: Redis,
        *,
        required: Level,
        allow_volatile: bool,
        interval_s: float,
        retry_after_s: int,
        prober: Callable[[], Awaitable[Durability]] | None = None,
    ) -> None:
        self.redis = redis
        # On Redis Cluster: every master's, the weakest (app/core/durability.py).
        self.prober = prober
        self.required = required
        self.allow_volatile = allow_volatile
        self.interval_s = interval_s
        self.retry_after_s = retry_after_s
        self._checked_at = -float("inf")
        self._last: Durability | None = None
        self._lock = asyncio.Lock()

    async def current(self) -> Durability:
        if self._last is not None and time.monotonic() - self._checked_at < self.interval_s:
            return self._last
        async with self._lock:
            if self._last is None or time.monotonic() - self._checked_at >= self.interval_s:
                if self.prober is not None:
                    found = await self.prober()
                else:
                    found = await probe(self.redis, replicated=self.required == "replicated")
                if self._last is None or found != self._last:
                    self._report(found)
                self._last = found
                self._checked_at = time.monotonic()
        return self._last

    def _report(self, found: Durability) -> None:
        for level in ("volatile", "os-buffered", "fsync", "replicated"):
            QUEUE_DURABILITY.labels(level).set(1 if level == found.level else 0)
        refusal = found.refusal(self.required)
        if refusal is None:
            log.info("queue durability: %s (%s)", found.level, found.reason)
        elif self.allow_volatile:
            log.warning(
                "queue durability: %s; ingest accepts anyway (ALLOW_VOLATILE_QUEUE=true, for "
                "demos and tests only): an accepted event may be lost",
                refusal,
            )
        else:
            log.error("queue durability: %s; ingest answers 503", refusal)

    async def refusal(self) -> str | None:
        """Why ingest refuses now, or None."""
        if self.allow_volatile:
            return None
        return (await self.current()).refusal(self.required)

    async def check(self) -> None:
        reason = await self.refusal()
        if reason is not None:
            raise Unavailable(reason, headers={"Retry-After": str(self.retry_after_s)})


class Admission:
    """The checks ingest runs before accepting: durability, the tenant's own rate (so one
    tenant flooding meets its limit before the shared backlog fills), then backpressure."""

    def __init__(
        self,
        durability: DurabilityGate,
        backlog: BacklogGate | ShardedBacklog,
        limiter: TenantLimiter,
    ) -> None:
        self.durability = durability
        self.backlog = backlog
        self.limiter = limiter

    async def check(self, identity: Identity, events: int) -> None:
        await self.durability.check()
        self.limiter.take(identity, events)
        await self.backlog.check()
