"""The consumer-group loop, in the style of arq: small, explicit, with a burst mode.

Per batch: XREADGROUP, decode, one transaction of set-based upserts, XACK only after the
commit. Entries a dead consumer left pending are taken over with XAUTOCLAIM.

Errors are classed by what they mean. Only an error about *this event's data* (SQLSTATE
class 22, an integrity violation of one row, an event the row builder cannot read) leads to
bisection and the dead-letter stream. Anything else is a fault of the system (connection
lost, timeout, permission denied, missing table, read-only standby, disk full, ...): the
batch is kept, nothing is acknowledged or dead-lettered, the worker backs off and retries
it in place, says so (a gauge and its health key), and resumes when the cause goes away.
While it waits it keeps claiming its entries (XCLAIM JUSTID, which counts no delivery), so
no other worker takes them over and their delivery count does not grow. An entry is
dead-lettered for its deliveries only when it keeps killing the workers that take it.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from tenacity import AsyncRetrying

from app.core.metrics import (
    BATCH_EVENTS,
    DB_RETRIES,
    DEAD_LETTER_ENTRIES,
    DEAD_LETTERS,
    SHARD_STORED,
    STORED,
    UPSERT_SECONDS,
    WORKER_FAULT,
)
from app.core.retry import Stopped, healthy, retrying
from app.core.settings import Settings
from app.core.shards import Shard
from app.core.streams import EventStream, parse_id, text
from workers.batch import Batch, Entry, decode, event_rows
from workers.database import Database, MalformedEvent, is_data_error
from workers.deadletter import DeadLetters
from workers.writes import EventRow, ReadingRow, write_batch

log = logging.getLogger("workers")

AfterCommit = Callable[[Sequence[dict[str, Any]]], Awaitable[None]]
Writer = Callable[[asyncpg.Connection, Sequence[EventRow], Sequence[ReadingRow]], Awaitable[int]]


# KEYS[1]: the stream; ARGV: group, this consumer, the idle limit in ms.
FORGET_LUA = """#!lua
local forgotten = 0
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do
    info[consumer[i]] = consumer[i + 1]
  end
  if info['name'] ~= ARGV[2] and info['pending'] == 0 and info['idle'] >= tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    forgotten = forgotten + 1
  end
end
return forgotten
"""


def _system_fault(error: BaseException) -> bool:
    return isinstance(error, Exception) and not is_data_error(error)


def _chunks(entries: list[Entry], max_events: int, max_bytes: int) -> list[list[Entry]]:
    """Entries in order, cut into runs of at most max_events events and max_bytes bytes (an
    entry larger than either is a run of its own): one transaction stays bounded however
    many entries a read or a reclaim returns."""
    runs: list[list[Entry]] = []
    run: list[Entry] = []
    events = size = 0
    for entry in entries:
        fields = entry[1]
        count = int(fields.get(b"n", b"1") or 1)
        length = len(fields.get(b"d", b""))
        if run and (events + count > max_events or size + length > max_bytes):
            runs.append(run)
            run, events, size = [], 0, 0
        run.append(entry)
        events += count
        size += length
    if run:
        runs.append(run)
    return runs


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
        shard: Shard | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.database = database
        self.name = name
        self.burst = burst
        self.after_commit = after_commit
        self.writer = writer
        # On Redis Cluster a worker consumes one shard's stream (workers/shards.py runs one
        # per shard); its consumer name is the same on every shard, its health key is not.
        self.shard = shard
        self.key = shard.stream if shard else settings.stream
        dead_stream = shard.dead_letter_stream if shard else settings.dead_letter_stream
        self.stream = EventStream(redis, self.key, settings.group)
        self._forget = redis.register_script(FORGET_LUA)
        self.dead = DeadLetters(redis, self.key, dead_stream, settings.dead_letter_maxlen)
        self._stopping = asyncio.Event()
        self._next_claim = 0.0
        self._next_trim = 0.0
        self.stored = 0
        # What this worker is waiting out, if anything (kind, message): for the health key.
        self.fault: tuple[str, str] | None = None

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        health = asyncio.create_task(self._report_health(), name=f"health-{self.name}")
        try:
            # A burst worker fails fast; a long-running one waits out any fault (the batch in
            # hand stays pending, and XAUTOCLAIM retries it and counts its deliveries). The
            # start is inside the retries too: Redis may be down or failing over right then.
            async for attempt in retrying(
                f"worker {self.label}",
                on=lambda error: not self.burst and isinstance(error, Exception),
                initial_s=self.settings.db_retry_base_s,
                max_s=self.settings.db_retry_max_s,
                stop=self._stopping,
            ):
                with attempt:
                    await self.stream.ensure_group()
                    # Entries this consumer name read before a restart or fault come first.
                    while not self.stopping and await self._consume("0"):
                        pass
                    while not self.stopping and await self._step_or_regroup():
                        healthy(attempt.retry_state)
        except Stopped:
            log.info("worker %s stopping with a batch unacknowledged", self.name)
        finally:
            health.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await health
            with contextlib.suppress(RedisError, OSError):
                await self.redis.delete(self._health_key)

    @property
    def _health_key(self) -> str:
        return f"{self.settings.worker_health_prefix}:{self.label}"

    @property
    def label(self) -> str:
        """The name in logs and health: the consumer's, and its shard's on a cluster."""
        return self.name if self.shard is None else f"{self.name}/{self.shard.label}"

    async def _report_health(self) -> None:
        """A short-lived key saying this worker is alive, and what fault it waits out."""
        while True:
            await self._write_health()
            await asyncio.sleep(self.settings.worker_health_interval_s)

    async def _write_health(self) -> None:
        kind, message = self.fault or (None, None)
        body = {"name": self.label, "status": "fault" if kind else "ok", "fault": kind,
                "detail": message, "stored": self.stored, "at": time.time()}  # fmt: skip
        ttl = int(self.settings.worker_health_interval_s * 3) + 1
        with contextlib.suppress(RedisError, OSError):
            await self.redis.set(self._health_key, orjson.dumps(body), ex=ttl)

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
        entries = await self._read(last_id, self.settings.batch_entries, block)
        if entries and last_id == ">" and not self.burst:
            entries += await self._linger(len(entries))
        if entries:
            await self.process(entries)
        return len(entries)

    async def _read(self, last_id: str, count: int, block: int | None) -> list[Entry]:
        reply: Any = await self.redis.xreadgroup(
            self.settings.group, self.name, {self.key: last_id}, count=count,
            block=block,
        )  # fmt: skip
        entries: list[Entry] = reply[0][1] if reply else []
        return entries

    async def _linger(self, have: int) -> list[Entry]:
        """More entries for up to BATCH_LINGER_MS once some arrived: a transaction and its
        round trips cost about the same for 5 events as for 500, so under a steady trickle
        (many small requests) waiting a few ms for company halves the work per event."""
        linger = self.settings.batch_linger_ms
        if linger <= 0:
            return []
        more: list[Entry] = []
        deadline = time.monotonic() + linger / 1000
        while have + len(more) < self.settings.batch_entries:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                break
            got = await self._read(">", self.settings.batch_entries - have - len(more), left_ms)
            if not got:
                break
            more += got
        return more

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
                self.key,
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
            self.key,
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
                await self.redis.xack(self.key, self.settings.group, entry_id)
                DEAD_LETTERS.labels("entry").inc()
                log.warning("dead-lettered entry %r after %d deliveries", entry_id, times)
            else:
                fresh.append((entry_id, fields))
        if fresh:
            await self.process(fresh)

    async def process(self, entries: list[Entry]) -> None:
        for run in _chunks(entries, self.settings.batch_max_events, self.settings.batch_max_bytes):
            batch = decode(run)
            for poison in batch.poison:
                await self.dead.add_entry(poison.entry_id, poison.payload, poison.error, self.name)
                DEAD_LETTERS.labels("entry").inc()
            async with self._holding(batch.entry_ids):
                await self._store(batch)
            await self.redis.xack(self.key, self.settings.group, *batch.entry_ids)
            self.stored += len(batch.events)
            if self.shard is not None:
                SHARD_STORED.labels(self.shard.label).inc(len(batch.events))

    @contextlib.asynccontextmanager
    async def _holding(self, entry_ids: list[bytes]) -> AsyncIterator[None]:
        """Keep the entries this consumer's while it works on them, however long a fault
        lasts: claimed again (JUSTID: no delivery counted) well within CLAIM_IDLE_MS."""
        if self.settings.claim_idle_ms <= 0 or not entry_ids:
            yield
            return
        period = self.settings.claim_idle_ms / 3000
        ids: list[Any] = list(entry_ids)

        async def renew() -> None:
            while True:
                await asyncio.sleep(period)
                with contextlib.suppress(RedisError, OSError):
                    await self.redis.xclaim(
                        self.key, self.settings.group, self.name, 0, ids, justid=True
                    )

        task = asyncio.create_task(renew(), name=f"hold-{self.name}")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _retrying(self, label: str) -> AsyncRetrying:
        async def on_retry(error: BaseException) -> None:
            kind = type(error).__name__
            changed = self.fault is None or self.fault[0] != kind
            self.fault = (kind, str(error)[:300])
            if changed:
                WORKER_FAULT.labels(kind).set(1)
                await self._write_health()
            if isinstance(error, (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
                await self.database.reset()
                DB_RETRIES.inc()

        return retrying(
            f"worker {self.name}: {label}",
            on=_system_fault,
            initial_s=self.settings.db_retry_base_s,
            max_s=self.settings.db_retry_max_s,
            stop=self._stopping,
            on_retry=on_retry,
        )

    async def _recovered(self) -> None:
        if self.fault is not None:
            log.info("worker %s recovered from %s", self.name, self.fault[0])
            WORKER_FAULT.labels(self.fault[0]).set(0)
            self.fault = None
            await self._write_health()

    async def _store(self, batch: Batch) -> None:
        stored: list[dict[str, Any]] = []
        async for attempt in self._retrying("storing a batch"):
            with attempt:
                stored = await self._write_isolating(batch.events)
        if self.after_commit is not None and stored:
            # Committed: a failure from here on is retried here, never by rewriting storage,
            # and never dead-letters what is already stored.
            async for attempt in self._retrying("after-commit step"):
                with attempt:
                    await self.after_commit(stored)
        await self._recovered()

    async def _write_isolating(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write events; when the database refuses the data, bisect to find the bad ones; when
        a transaction times out, halve it rather than retry it whole."""
        if not events:
            return []
        try:
            await self._write(events)
            return events
        except Exception as error:
            timed_out = isinstance(error, (asyncpg.QueryCanceledError, TimeoutError))
            if timed_out and len(events) > 1:
                log.warning("a %d-event transaction timed out; halving it", len(events))
                if isinstance(error, TimeoutError):
                    await self.database.reset()
            elif not is_data_error(error):
                raise
            elif len(events) == 1:
                log.warning("dead-lettered event %s: %r", events[0].get("event_id"), error)
                await self.dead.add_event(events[0], repr(error), self.name)
                DEAD_LETTERS.labels("event").inc()
                return []
        middle = len(events) // 2
        left = await self._write_isolating(events[:middle])
        return left + await self._write_isolating(events[middle:])

    async def _write(self, events: list[dict[str, Any]]) -> None:
        try:
            event_rows_, reading_rows = event_rows(events)
        except (ValueError, TypeError, KeyError) as error:
            raise MalformedEvent(repr(error)) from error
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
        DEAD_LETTER_ENTRIES.set(await self.dead.size())
        await self.trim()
        await self.forget_idle_consumers()

    async def forget_idle_consumers(self) -> int:
        """Drop consumers that hold nothing and have been idle long: each start adds one.

        Checked and deleted in one script: a consumer that reads between a check and a
        DELCONSUMER would lose the entries it just read from the group's pending list.
        """
        forgotten: Any = await self._forget(
            keys=[self.key],
            args=[self.settings.group, self.name, self.settings.forget_consumer_after_ms],
        )
        return int(forgotten)

    async def trim(self) -> None:
        """Trim only below what every group has acknowledged (Redis 7 has no ACKED trim)."""
        if not await self.redis.exists(self.key):
            return
        groups: Any = await self.redis.xinfo_groups(self.key)
        floor: list[tuple[int, int]] = []
        for group in groups:
            last = group["last-delivered-id"]
            if int(group["pending"]):
                summary: Any = await self.redis.xpending(self.key, group["name"])
                # Between the two calls the pending entries may all have been acknowledged;
                # the last-delivered id is then the floor.
                if summary["min"] is not None:
                    last = summary["min"]
            floor.append(parse_id(text(last)))
        if floor and min(floor) > (0, 0):
            low_ms, low_seq = min(floor)
            await self.redis.xtrim(self.key, minid=f"{low_ms}-{low_seq}", approximate=True)
