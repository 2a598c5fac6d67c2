"""The consumer-group loop, in the style of arq: small, explicit, with a burst mode.

Per batch: XREADGROUP, decode, one transaction of set-based upserts, XACK only after the
commit. Entries a dead consumer left pending are taken over with XAUTOCLAIM; an entry
delivered too often, or an event the database refuses, goes to the dead-letter stream.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from app.core.metrics import BATCH_EVENTS, DB_RETRIES, DEAD_LETTERS, STORED, UPSERT_SECONDS
from app.core.retry import Stopped, healthy, retrying
from app.core.settings import Settings
from app.core.streams import EventStream, parse_id, text
from workers.batch import Batch, Entry, decode, event_rows
from workers.database import Database, is_transient
from workers.deadletter import DeadLetters
from workers.writes import EventRow, ReadingRow, write_batch

log = logging.getLogger("workers")

AfterCommit = Callable[[Sequence[dict[str, Any]]], Awaitable[None]]
Writer = Callable[[asyncpg.Connection, Sequence[EventRow], Sequence[ReadingRow]], Awaitable[int]]


def _data_error(error: BaseException) -> bool:
    # asyncpg's client-side DataError is an InterfaceError too, but it is about the data.
    if isinstance(error, asyncpg.exceptions.DataError):
        return True
    if isinstance(error, (ValueError, TypeError, KeyError)):
        return True
    return isinstance(error, asyncpg.PostgresError) and not is_transient(error)


class Worker:
    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        database: Database,
        *,
        name: str,
        burst: bool = False,
        after_commit: AfterCommit | None = None,
        writer: Writer = write_batch,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.database = database
        self.name = name
        self.burst = burst
        self.after_commit = after_commit
        self.writer = writer
        self.stream = EventStream(redis, settings.stream, settings.group)
        self.dead = DeadLetters(redis, settings.stream, settings.dead_letter_stream)
        self._stopping = asyncio.Event()
        self._next_claim = 0.0
        self._next_trim = 0.0
        self.stored = 0

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        await self.stream.ensure_group()
        try:
            # Entries this consumer name read before a restart come first.
            while not self.stopping and await self._consume("0"):
                pass
            # A burst worker fails fast; a long-running one waits out any fault (the batch in
            # hand stays pending, and XAUTOCLAIM retries it and counts its deliveries).
            async for attempt in retrying(
                f"worker {self.name}",
                on=lambda error: not self.burst and isinstance(error, Exception),
                initial_s=self.settings.db_retry_base_s,
                max_s=self.settings.db_retry_max_s,
                stop=self._stopping,
            ):
                with attempt:
                    while not self.stopping and await self._step_or_regroup():
                        healthy(attempt.retry_state)
        except Stopped:
            log.info("worker %s stopping with a batch unacknowledged", self.name)

    async def _step_or_regroup(self) -> bool:
        try:
            return await self._step()
        except ResponseError as error:
            gone = "NOGROUP" in str(error) or "no longer exists" in str(error)
            if not gone or self.burst:
                raise
        # The stream or group vanished (a Redis restart without persistence): recreate the
        # group from the start of whatever the stream holds now.
        log.warning("consumer group missing; recreating it")
        await self.stream.ensure_group()
        return True

    async def _step(self) -> bool:
        """One turn of the loop; False when a burst worker has drained everything."""
        claimed = await self._maybe_reclaim()
        await self._maybe_trim()
        if await self._consume(">"):
            return True
        return not (self.burst and not claimed)

    async def _consume(self, last_id: str) -> int:
        block = None if self.burst or last_id != ">" else self.settings.block_ms
        reply: Any = await self.redis.xreadgroup(
            self.settings.group,
            self.name,
            {self.settings.stream: last_id},
            count=self.settings.batch_entries,
            block=block,
        )
        entries: list[Entry] = reply[0][1] if reply else []
        if entries:
            await self.process(entries)
        return len(entries)

    async def _maybe_reclaim(self) -> int:
        now = time.monotonic()
        if not self.burst and now < self._next_claim:
            return 0
        self._next_claim = now + self.settings.claim_interval_s
        return await self.reclaim()

    async def reclaim(self) -> int:
        """Take over entries idle past the limit; dead-letter those delivered too often."""
        start = "0-0"
        total = 0
        while not self.stopping:
            # Not JUSTID: only a real claim counts as a delivery.
            reply: Any = await self.redis.xautoclaim(
                self.settings.stream,
                self.settings.group,
                self.name,
                min_idle_time=self.settings.claim_idle_ms,
                start_id=start,
                count=self.settings.batch_entries,
            )
            next_start, claimed = reply[0], reply[1]
            claimed = [entry for entry in claimed if entry[1] is not None]
            if claimed:
                total += len(claimed)
                await self._process_claimed(claimed)
            start = text(next_start)
            if start == "0-0":
                break
        return total

    async def _process_claimed(self, claimed: list[Entry]) -> None:
        pending: Any = await self.redis.xpending_range(
            self.settings.stream,
            self.settings.group,
            min=claimed[0][0],
            max=claimed[-1][0],
            count=len(claimed) * 2,
            consumername=self.name,
        )
        deliveries: dict[bytes, int] = {p["message_id"]: p["times_delivered"] for p in pending}
        fresh: list[Entry] = []
        for entry_id, fields in claimed:
            times = deliveries.get(entry_id, 0)
            if times > self.settings.max_deliveries:
                await self.dead.add_entry(
                    entry_id, fields.get(b"d", b""), f"delivered {times} times", self.name
                )
                await self.redis.xack(self.settings.stream, self.settings.group, entry_id)
                DEAD_LETTERS.labels("entry").inc()
                log.warning("dead-lettered entry %r after %d deliveries", entry_id, times)
            else:
                fresh.append((entry_id, fields))
        if fresh:
            await self.process(fresh)

    async def process(self, entries: list[Entry]) -> None:
        batch = decode(entries)
        for poison in batch.poison:
            await self.dead.add_entry(poison.entry_id, poison.payload, poison.error, self.name)
            DEAD_LETTERS.labels("entry").inc()
        await self._store(batch)
        await self.redis.xack(self.settings.stream, self.settings.group, *batch.entry_ids)
        self.stored += len(batch.events)

    async def _store(self, batch: Batch) -> None:
        async def on_retry(error: BaseException) -> None:
            await self.database.reset()
            DB_RETRIES.inc()

        stored: list[dict[str, Any]] = []
        async for attempt in retrying(
            "database",
            on=is_transient,
            initial_s=self.settings.db_retry_base_s,
            max_s=self.settings.db_retry_max_s,
            stop=self._stopping,
            on_retry=on_retry,
        ):
            with attempt:
                stored = await self._write_isolating(batch.events)
        if self.after_commit is not None and stored:
            await self.after_commit(stored)

    async def _write_isolating(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write events; when the database refuses the data, bisect to find the bad ones."""
        if not events:
            return []
        try:
            await self._write(events)
            return events
        except Exception as error:
            if not _data_error(error):
                raise
            if len(events) == 1:
                log.warning("dead-lettered event %s: %r", events[0].get("event_id"), error)
                await self.dead.add_event(events[0], repr(error), self.name)
                DEAD_LETTERS.labels("event").inc()
                return []
        middle = len(events) // 2
        left = await self._write_isolating(events[:middle])
        return left + await self._write_isolating(events[middle:])

    async def _write(self, events: list[dict[str, Any]]) -> None:
        event_rows_, reading_rows = event_rows(events)
        conn = await self.database.connection()
        with UPSERT_SECONDS.time():
            async with conn.transaction():
                await self.writer(conn, event_rows_, reading_rows)
        BATCH_EVENTS.observe(len(events))
        STORED.inc(len(events))

    async def _maybe_trim(self) -> None:
        now = time.monotonic()
        if now < self._next_trim:
            return
        self._next_trim = now + self.settings.trim_interval_s
        await self.trim()
        await self.forget_idle_consumers()

    async def forget_idle_consumers(self) -> int:
        """Drop consumers that hold nothing and have been idle long: each start adds one."""
        consumers: Any = await self.redis.xinfo_consumers(self.settings.stream, self.settings.group)
        forgotten = 0
        for consumer in consumers:
            name = text(consumer["name"])
            idle_ms = int(consumer["idle"])
            if (
                name != self.name
                and not int(consumer["pending"])
                and idle_ms >= self.settings.forget_consumer_after_ms
            ):
                await self.redis.xgroup_delconsumer(self.settings.stream, self.settings.group, name)
                forgotten += 1
        return forgotten

    async def trim(self) -> None:
        """Trim only below what every group has acknowledged (Redis 7 has no ACKED trim)."""
        if not await self.redis.exists(self.settings.stream):
            return
        groups: Any = await self.redis.xinfo_groups(self.settings.stream)
        floor: list[tuple[int, int]] = []
        for group in groups:
            last = group["last-delivered-id"]
            if int(group["pending"]):
                summary: Any = await self.redis.xpending(self.settings.stream, group["name"])
                # Between the two calls the pending entries may all have been acknowledged;
                # the last-delivered id is then the floor.
                if summary["min"] is not None:
                    last = summary["min"]
            floor.append(parse_id(text(last)))
        if floor and min(floor) > (0, 0):
            low_ms, low_seq = min(floor)
            await self.redis.xtrim(
                self.settings.stream, minid=f"{low_ms}-{low_seq}", approximate=True
            )
