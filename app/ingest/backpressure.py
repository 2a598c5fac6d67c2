"""Backpressure: refuse new events while the workers are too far behind."""

import asyncio
import time

from app.core.errors import Backpressure
from app.core.metrics import BACKLOG_AGE, BACKLOG_ENTRIES
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
    ) -> None:
        self.stream = stream
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
                BACKLOG_ENTRIES.set(self._last.entries)
                BACKLOG_AGE.set(self._last.oldest_age_s)
        return self._last

    async def check(self) -> None:
        backlog = await self.current()
        if backlog.entries > self.max_entries or backlog.oldest_age_s > self.max_age_s:
            raise Backpressure(
                f"ingest backlog is full ({backlog.entries} entries, oldest "
                f"{backlog.oldest_age_s:.1f} s); retry later",
                headers={"Retry-After": str(self.retry_after_s)},
            )
