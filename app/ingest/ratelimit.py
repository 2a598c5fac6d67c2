"""Per-tenant ingest rate limits: a token bucket per tenant in each API process.

A tenant may send TENANT_RATE_EPS events a second with bursts of TENANT_BURST (its key may
set its own); past that its requests get 429 with `Retry-After`, while the other tenants
keep their 202s. The global backlog gate stays behind this as the last line of defence. The
buckets live in the process (no round trip a request): with K API processes a tenant may
reach K times its limit, so set it per process.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.core.errors import TelemetryError
from app.core.metrics import TENANT_LIMITED
from app.core.tenancy import Identity


class RateLimited(TelemetryError):
    status = 429
    code = "rate_limited"


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class TenantLimiter:
    def __init__(
        self, rate_eps: float, burst: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate_eps = rate_eps
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, identity: Identity, events: int) -> None:
        """Spend `events` tokens of the tenant, or raise RateLimited (nothing spent)."""
        rate = identity.rate_eps or self.rate_eps
        burst = max(identity.burst or self.burst, 1.0)
        now = self.clock()
        bucket = self._buckets.get(identity.tenant)
        if bucket is None:
            bucket = self._buckets[identity.tenant] = _Bucket(burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if events <= bucket.tokens:
            bucket.tokens -= events
            return
        TENANT_LIMITED.labels(identity.tenant).inc()
        wait = math.ceil((min(events, burst) - bucket.tokens) / rate)
        raise RateLimited(
            f"tenant {identity.tenant!r} is over its ingest rate ({rate:g} events/s, bursts of "
            f"{burst:g}); retry later",
            headers={"Retry-After": str(max(1, wait))},
        )
