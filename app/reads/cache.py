"""The read cache: a bounded LRU with a TTL per entry, and the invariants an answer must meet.

Keys are (endpoint, tenant, every query parameter). An answer whose range ends below the
rollup watermark is *closed*: only a late reading can change it, and the refresher logs
every range it re-materialises for late data, so closed answers live long and are evicted
when a logged range overlaps them. Answers that reach past the watermark live briefly.

Nothing impossible enters the cache: every answer is checked first (energy >= 0, cumulative
energy non-decreasing, count >= 0, min <= avg <= max, every bucket inside the asked range).
"""

import math
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from cachetools import TLRUCache

from app.core.errors import TelemetryError
from app.core.metrics import CACHE_HITS, CACHE_MISSES
from app.reads.aggregates import Bucket, Refreshed, RollupState, Window

Key = tuple[Hashable, ...]


class ImpossibleAnswer(TelemetryError):
    """An aggregate broke an invariant: a bug, never served and never cached."""

    status = 500
    code = "impossible_aggregate"


@dataclass(frozen=True, slots=True)
class Entry:
    body: bytes
    lo_us: int
    hi_us: int
    closed: bool
    # How far behind the primary the pool it was read from was (0 on the primary).
    lag_s: float = 0.0


class ReadCache:
    def __init__(
        self,
        maxsize: int,
        *,
        ttl_recent_s: float,
        ttl_closed_s: float,
        sync_interval_s: float,
        timer: Callable[[], float] = time.monotonic,
        lag: Callable[[], float] = lambda: 0.0,
    ) -> None:
        """`lag`: the replay lag of the pool this cache's answers are read from (a replica's
        cache; app/core/replica.py), which widens their staleness bound."""
        self.lag = lag
        self.ttl_recent_s = ttl_recent_s
        self.ttl_closed_s = ttl_closed_s
        self.sync_interval_s = sync_interval_s
        self._timer = timer
        self._entries: TLRUCache[Key, Entry] = TLRUCache(maxsize, self._ttu, timer)
        self._next_sync = float("-inf")
        # Bumped whenever a late refresh is seen: an answer computed before it may be stale.
        self.generation = 0
        self.cursor: int | None = None
        self.state = RollupState(None, None, 0)

    def _ttu(self, key: Key, entry: Entry, now: float) -> float:
        return now + (self.ttl_closed_s if entry.closed else self.ttl_recent_s)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> Entry | None:
        entry = self._entries.get(key)
        (CACHE_HITS if entry is not None else CACHE_MISSES).labels(str(key[0])).inc()
        return entry

    def put(self, key: Key, entry: Entry, generation: int) -> bool:
        """Keep an answer computed at `generation`, unless a late refresh has been seen since."""
        if generation != self.generation:
            return False
        self._entries[key] = entry
        return True

    def sync_due(self) -> bool:
        """True at most once per sync interval; the caller then fetches and calls synced()."""
        now = self._timer()
        if now < self._next_sync:
            return False
        self._next_sync = now + self.sync_interval_s
        return True

    def synced(self, state: RollupState, refreshed: Sequence[Refreshed]) -> None:
        """Take the refresher's state and evict what its late refreshes overlap."""
        self.state = state
        if self.cursor is None:
            # Nothing was cached before the first sync, so there is nothing to evict.
            self.cursor = state.log_id
            return
        fresh = [r for r in refreshed if r.id > self.cursor]
        if not fresh:
            return
        self.generation += 1
        self.cursor = max(r.id for r in fresh)
        stale = [
            key
            for key, entry in list(self._entries.items())
            if any(r.lo_us < entry.hi_us and entry.lo_us < r.hi_us for r in fresh)
        ]
        for key in stale:
            self._entries.pop(key, None)

    def closed(self, hi_us: int) -> bool:
        """Whether a range ending at hi_us lies wholly below the watermark last seen."""
        watermark = self.state.watermark_us
        return watermark is not None and hi_us <= watermark


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def check_buckets(buckets: Sequence[Bucket], from_us: int, to_us: int) -> None:
    """count >= 0, min <= avg <= max, finite, ordered, every bucket inside [from, to)."""
    previous_end = from_us
    for b in buckets:
        if not (previous_end <= b.start_us < b.end_us <= to_us):
            raise ImpossibleAnswer(f"bucket {b.start_us}..{b.end_us} is outside the range")
        if b.count < 0 or not _finite(b.sum, b.avg, b.min, b.max):
            raise ImpossibleAnswer("bucket has a negative count or a non-finite value")
        if not (b.min <= b.avg <= b.max):
            raise ImpossibleAnswer("bucket breaks min <= avg <= max")
        previous_end = b.end_us


def check_windows(windows: Sequence[Window], from_us: int, to_us: int) -> None:
    """energy >= 0, cumulative non-decreasing and equal to the running sum, 0 <= avg <= peak."""
    previous_end = from_us
    cumulative = 0.0
    for w in windows:
        if not (previous_end <= w.start_us < w.end_us <= to_us):
            raise ImpossibleAnswer(f"window {w.start_us}..{w.end_us} is outside the range")
        if not _finite(w.energy_wh, w.cumulative_wh, w.avg_power, w.peak_power):
            raise ImpossibleAnswer("window has a non-finite value")
        if w.energy_wh < 0 or w.cumulative_wh < cumulative:
            raise ImpossibleAnswer("energy is negative or cumulative energy decreased")
        cumulative += w.energy_wh
        if w.cumulative_wh != cumulative:
            raise ImpossibleAnswer("cumulative energy is not the running sum")
        if not (0 <= w.avg_power <= w.peak_power):
            raise ImpossibleAnswer("window breaks 0 <= average power <= peak power")
        previous_end = w.end_us
