"""Backpressure: refuse new events while the workers are too far behind."""

import asyncio
import time
from collections.abc import Iterable

from app.core.errors import Backpressure
from app.core.metrics import BACKLOG_AGE, BACKLOG_ENTRIES, SHARD_BACKLOG_AGE, SHARD_BACKLOG_ENTRIES
from app.core.streams import Backlog, EventStream


class BacklogGate:
    """Checks the group's backlog at most once per interval, shared by all requests."""

    def __init__(
        self,
        stream: EventStream,
        *,
        max_entries: int,
        max_age_s: float,
        interval_s: float,
        retry_after_s: int,
        label: str | None = None,
    ) -> None:
        self.stream = stream
        # A shard's gate (app/ingest/cluster.py) sets that shard's gauges, not the totals.
        self.label = label
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self.interval_s = interval_s
        self.retry_after_s = retry_after_s
        self._checked_at = -float("inf")
        self._last = Backlog(0, 0.0)
        self._lock = asyncio.Lock()

    async def current(self) -> Backlog:
        if time.monotonic() - self._checked_at < self.interval_s:
            return self._last
        async with self._lock:
            if time.monotonic() - self._checked_at >= self.interval_s:
                self._last = await self.stream.backlog()
                self._checked_at = time.monotonic()
                if self.label is None:
                    BACKLOG_ENTRIES.set(self._last.entries)
                    BACKLOG_AGE.set(self._last.oldest_age_s)
                else:
                    SHARD_BACKLOG_ENTRIES.labels(self.label).set(self._last.entries)
                    SHARD_BACKLOG_AGE.labels(self.label).set(self._last.oldest_age_s)
        return self._last

    def over(self, backlog: Backlog) -> bool:
        return backlog.entries > self.max_entries or backlog.oldest_age_s > self.max_age_s

    async def check(self) -> None:
        backlog = await self.current()
        if self.over(backlog):
            where = "" if self.label is None else f" of shard {self.label}"
            raise Backpressure(
                f"ingest backlog{where} is full ({backlog.entries} entries, oldest "
                f"{backlog.oldest_age_s:.1f} s); retry later",
                headers={"Retry-After": str(self.retry_after_s)},
            )


class ShardedBacklog:
    """The backlog gates of a cluster's shards, each with the bounds of one stream.

    Admission checks nothing here (`check`): the enqueue checks the shards a request goes
    to (`check_shards`) before it calls any, so a 429 names the full shard and a request to
    the other shards is served. `current` is the total, for /readyz and the gauges.
    """

    def __init__(self, gates: list[BacklogGate]) -> None:
        self.gates = gates
        self.max_entries = sum(gate.max_entries for gate in gates)
        self.max_age_s = max(gate.max_age_s for gate in gates)

    async def check(self) -> None:
        return None

    async def check_shards(self, indices: Iterable[int]) -> None:
        await asyncio.gather(*(self.gates[index].check() for index in indices))

    async def shards(self) -> list[Backlog]:
        return list(await asyncio.gather(*(gate.current() for gate in self.gates)))

    async def current(self) -> Backlog:
        each = await self.shards()
        total = Backlog(
            sum(b.entries for b in each),
            max(b.oldest_age_s for b in each),
            sum(b.length for b in each),
        )
        BACKLOG_ENTRIES.set(total.entries)
        BACKLOG_AGE.set(total.oldest_age_s)
        return total
