"""Alerts in the workers: the rule cache, the evaluator and the history writer.

- Rules: every worker holds all rules in memory. It subscribes to rule changes, then loads
  what changed since its per-tenant versions (at start: everything), and repeats that
  cheap version check every ALERT_RULE_SYNC_S, so a missed message is made up within one
  period.
- Evaluation: `evaluate` is the worker's after_commit. It matches the committed events
  against the rules in memory (no database round trip) and sends the matching
  observations to a Redis script that runs the state machine atomically
  (app/alerts/state.py, arguments built by app/alerts/evaluator.py), in calls of at most ALERT_EVAL_CHUNK observations.
- History: transitions reach the alert history table from the alert stream through a
  consumer group, acknowledged after commit and inserted idempotently by alert id, so a
  worker dying between the script and the insert loses no history row.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from app.alerts.evaluator import Observation, Pair, chunks, observations, script_calls
from app.alerts.history import history_row
from app.alerts.queries import insert_history, rule_changes
from app.alerts.rules import Rule, RuleSet
from app.alerts.state import AlertStream
from app.core.errors import queue_unavailable
from app.core.metrics import (
    ALERT_EVAL_FAILURES,
    ALERT_EVAL_SECONDS,
    ALERT_HISTORY,
    ALERT_RULES,
    ALERT_TRANSITIONS,
)
from app.core.retry import healthy, redis_fault, retrying
from app.core.settings import Settings
from app.core.shards import Shard
from workers.database import Database

log = logging.getLogger("workers.alerts")

Entry = tuple[bytes, dict[bytes, bytes]]


class Alerts:
    """The alert side of one worker."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        *,
        name: str,
        database: Database | None = None,
        shards: Sequence[Shard] = (),
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.name = name
        self.database = database or Database(settings, application_name="telemetry-alerts")
        self.rules = RuleSet()
        self.stream = self._alert_stream(settings.alert_stream)
        # On Redis Cluster each shard has its alert stream and states in its slot, so one
        # script call per shard moves states and notifies atomically; history is written
        # from the streams of this worker's shards.
        self.shard_streams = {
            shard.index: self._alert_stream(shard.alert_stream) for shard in shards
        }
        self.history_streams = list(self.shard_streams.values()) or [self.stream]
        # Two shards' streams make the same ids: a shard's alert ids carry its label.
        self._labels = {shard.alert_stream: shard.label for shard in shards}
        self.loaded = asyncio.Event()
        # The rule sync and the history writer share one connection, one at a time.
        self._db_lock = asyncio.Lock()
        self._group_ready = False
        self._tasks: list[asyncio.Task[None]] = []

    def _alert_stream(self, key: str) -> AlertStream:
        settings = self.settings
        return AlertStream(
            self.redis,
            key,
            settings.alert_channel,
            settings.alert_stream_maxlen,
            settings.alert_state_ttl_s,
        )

    # Rules.

    async def sync(self) -> int:
        """Load the rule changes newer than this worker's versions; the number applied."""
        async with self._db_lock:
            conn = await self.database.connection()
            versions, changes = await rule_changes(conn, self.rules.versions)
        applied = self.rules.apply(changes)
        self.rules.synced(versions)
        self.loaded.set()
        ALERT_RULES.set(len(self.rules))
        return applied

    def apply_message(self, data: bytes) -> None:
        try:
            rule = Rule.from_message(orjson.loads(data))
        except (ValueError, KeyError, TypeError) as error:
            log.warning("ignored an undecodable rule change (%r)", error)
            return
        self.rules.apply([rule])
        ALERT_RULES.set(len(self.rules))

    async def follow_rules(self) -> None:
        """Apply rule changes as they are published, and sync on a short period."""
        period = self.settings.alert_rule_sync_s
        async for attempt in retrying("rule subscription", on=redis_fault):
            with attempt:
                async with self.redis.pubsub() as pubsub:
                    # Subscribed before the sync: a change is in the sync or in a message.
                    await pubsub.subscribe(self.settings.alert_rules_channel)
                    healthy(attempt.retry_state)
                    next_sync = 0.0
                    while True:
                        if time.monotonic() >= next_sync:
                            await self._try_sync()
                            next_sync = time.monotonic() + period
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True,
                            timeout=min(1.0, max(0.0, next_sync - time.monotonic())),
                        )
                        if message is not None and message["type"] == "message":
                            self.apply_message(message["data"])

    async def _try_sync(self) -> None:
        try:
            await self.sync()
        except Exception as error:
            # Rules already in memory keep working; the next period tries again.
            log.warning("rule sync failed (%r)", error)
            async with self._db_lock:
                await self.database.reset()

    # Evaluation.

    async def evaluate(self, events: Sequence[dict[str, Any]], shard: Shard | None = None) -> None:
        """The worker's after_commit: run the committed events through the rules."""
        if not self.loaded.is_set():
            # Never evaluate without the rules: the batch fails and is retried instead.
            await asyncio.wait_for(self.loaded.wait(), timeout=5 * self.settings.alert_rule_sync_s)
        if shard is None:
            stream, prefix = self.stream, self.settings.alert_state_prefix
        else:
            stream, prefix = self.shard_streams[shard.index], shard.alert_state_prefix
        with ALERT_EVAL_SECONDS.time():
            observed = observations(self.rules, events)
            for part in chunks(observed, self.settings.alert_eval_chunk):
                await self._transition(part, stream, prefix)

    def evaluator(self, shard: Shard) -> Callable[[Sequence[dict[str, Any]]], Awaitable[None]]:
        """`evaluate` for the events of one shard's stream (a ShardedWorker's after_commit)."""

        async def evaluate(events: Sequence[dict[str, Any]]) -> None:
            await self.evaluate(events, shard)

        return evaluate

    async def _transition(
        self,
        part: dict[Pair, tuple[Rule, list[Observation]]],
        stream: AlertStream,
        prefix: str,
    ) -> None:
        """One script call; when the script refuses it (not Redis being down), the pairs one
        by one, and a pair that still fails is counted, logged and skipped: one bad (rule,
        device) must not hold every later batch back. States only move forward in event
        time, so pairs the refused call already moved are not notified twice."""
        size = sum(len(rows) for _, rows in part.values()) + 1
        try:
            for keys, args in script_calls(part, prefix, size):
                for _, state in await stream.transition(keys, args):
                    ALERT_TRANSITIONS.labels(state).inc()
        except ResponseError as error:
            if queue_unavailable(error):
                raise
            if len(part) > 1:
                for pair, value in part.items():
                    await self._transition({pair: value}, stream, prefix)
                return
            (rule_id, tenant, device), _ = next(iter(part.items()))
            ALERT_EVAL_FAILURES.inc()
            log.error(
                "alert evaluation refused: tenant %r rule %d device %r (%r); skipped",
                tenant,
                rule_id,
                device,
                error,
            )

    # History.

    async def record_history(self, block_ms: int | None = None) -> int:
        """Write one batch of new transitions to the history table; how many."""
        await self._ensure_group()
        total = 0
        # Several shards' streams: each read blocks only when all were empty.
        for stream in self.history_streams:
            reply: Any = await self.redis.xreadgroup(
                self.settings.alert_history_group,
                self.name,
                {stream.stream: ">"},
                count=self.settings.alert_history_batch,
                block=block_ms if len(self.history_streams) == 1 else None,
            )
            entries: list[Entry] = reply[0][1] if reply else []
            await self._record(stream.stream, entries)
            total += len(entries)
        if total == 0 and block_ms and len(self.history_streams) > 1:
            await asyncio.sleep(block_ms / 1000 / 4)
        return total

    async def reclaim_history(self) -> int:
        """Take over transitions a dead worker read but never recorded."""
        await self._ensure_group()
        total = 0
        for stream in self.history_streams:
            reply: Any = await self.redis.xautoclaim(
                stream.stream,
                self.settings.alert_history_group,
                self.name,
                min_idle_time=self.settings.claim_idle_ms,
                count=self.settings.alert_history_batch,
            )
            entries: list[Entry] = reply[1]
            await self._record(stream.stream, entries)
            total += len(entries)
        return total

    async def _ensure_group(self) -> None:
        if not self._group_ready:
            for stream in self.history_streams:
                await stream.ensure_group(self.settings.alert_history_group)
            self._group_ready = True

    async def _record(self, key: str, entries: list[Entry]) -> None:
        if not entries:
            return
        # An entry trimmed before it was recorded comes back empty: nothing left to write.
        rows = [history_row(entry_id, fields[b"d"]) for entry_id, fields in entries if fields]
        label = self._labels.get(key)
        if label is not None:
            rows = [(row[0], f"{row[1]}.{label}", *row[2:]) for row in rows]
        async with self._db_lock:
            conn = await self.database.connection()
            await insert_history(conn, rows)
        await self.redis.xack(
            key,
            self.settings.alert_history_group,
            *(entry_id for entry_id, _ in entries),
        )
        ALERT_HISTORY.inc(len(rows))

    async def write_history(self) -> None:
        async def on_retry(error: BaseException) -> None:
            # Unrecorded entries stay pending; the reclaim picks them up again.
            self._group_ready = False
            async with self._db_lock:
                await self.database.reset()

        next_claim = 0.0
        async for attempt in retrying(
            "alert history", on=lambda e: isinstance(e, Exception), on_retry=on_retry
        ):
            with attempt:
                while True:
                    if time.monotonic() >= next_claim:
                        await self.reclaim_history()
                        next_claim = time.monotonic() + self.settings.claim_interval_s
                    await self.record_history(block_ms=1000)
                    healthy(attempt.retry_state)

    # Lifecycle.

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator["Alerts"]:
        """Follow rules and write history in the background while the worker runs."""
        self._tasks = [
            asyncio.create_task(self.follow_rules(), name="alert-rules"),
            asyncio.create_task(self.write_history(), name="alert-history"),
        ]
        try:
            yield self
        finally:
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._tasks = []
            await self.database.close()
