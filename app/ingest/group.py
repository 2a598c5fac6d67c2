"""Group commit at the edge: small requests arriving together share one enqueue.

Single-event and small-batch requests of one tenant that arrive within GROUP_WINDOW_MS (or
until GROUP_MAX_EVENTS events wait) go to Redis as one dedupe + enqueue script call and one
stream entry; each request then gets its own statuses, sliced from the shared reply. So a
request waits at most the window plus one Redis round trip; `accepted` keeps its meaning
(appended, and marked seen only with the append, in that one script); a failed shared call
fails each of its requests with that error (503 for Redis, as alone); and events keep their
arrival order in the entry, so one device's requests, which a client sends one after the
other, keep theirs.
"""

import asyncio
from dataclasses import dataclass, field

from app.ingest.cluster import ShardedEnqueuer
from app.ingest.enqueue import Enqueuer, EventKey

# The enqueue of one Redis, or of a cluster's shards.
Enqueue = Enqueuer | ShardedEnqueuer


@dataclass(slots=True)
class _Group:
    keys: list[EventKey] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    waiters: list[tuple[int, int, asyncio.Future[list[bool]]]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class GroupCommit:
    def __init__(
        self, enqueuer: Enqueue, *, window_s: float, max_events: int, dedupe_window_s: int
    ) -> None:
        self.enqueuer = enqueuer
        self.window_s = window_s
        self.max_events = max_events
        self.dedupe_window_s = dedupe_window_s
        self._groups: dict[str, _Group] = {}
        self._flushes: set[asyncio.Task[None]] = set()

    async def enqueue(self, tenant: str, keys: list[EventKey], payloads: list[bytes]) -> list[bool]:
        """What Enqueuer.enqueue answers for these events, sharing the call with others."""
        if not keys:
            return []
        if len(keys) >= self.max_events:
            return await self.enqueuer.enqueue(tenant, keys, payloads, self.dedupe_window_s)
        loop = asyncio.get_running_loop()
        group = self._groups.get(tenant)
        if group is None:
            group = self._groups[tenant] = _Group()
            group.timer = loop.call_later(self.window_s, self._flush, tenant)
        future: asyncio.Future[list[bool]] = loop.create_future()
        start = len(group.keys)
        group.keys += keys
        group.payloads += payloads
        group.waiters.append((start, start + len(keys), future))
        if len(group.keys) >= self.max_events:
            self._flush(tenant)
        return await future

    def _flush(self, tenant: str) -> None:
        group = self._groups.pop(tenant, None)
        if group is None:
            return
        if group.timer is not None:
            group.timer.cancel()
        task = asyncio.get_running_loop().create_task(self._run(tenant, group))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _run(self, tenant: str, group: _Group) -> None:
        try:
            fresh = await self.enqueuer.enqueue(
                tenant, group.keys, group.payloads, self.dedupe_window_s
            )
        except Exception as error:
            for _, _, future in group.waiters:
                if not future.done():
                    future.set_exception(error)
            return
        for start, end, future in group.waiters:
            if not future.done():
                future.set_result(fresh[start:end])

    async def close(self) -> None:
        """Send what waits and let the calls in flight finish (on shutdown)."""
        for tenant in list(self._groups):
            self._flush(tenant)
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
