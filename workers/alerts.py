"""Alerts in the workers: the rule cache, the evaluator and the history writer.

- Rules: every worker holds all rules in memory. It subscribes to rule changes, then loads
  what changed since its per-tenant versions (at start: everything), and repeats that
  cheap version check every ALERT_RULE_SYNC_S, so a missed message is made up within one
  period.
- Evaluation: `evaluate` is the worker's after_commit. It matches the committed events
  against the rules in memory (no database round trip) and sends the matching
  observations to a Redis script that runs the state machine atomically
  (app/alert_stream.py), in calls of at most ALERT_EVAL_CHUNK observations.
- History: transitions reach the alert history table from the alert stream through a
  consumer group, acknowledged after commit and inserted idempotently by alert id, so a
  worker dying between the script and the insert loses no history row.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.alert_stream import AlertStream, state_key
from app.metrics import ALERT_EVAL_SECONDS, ALERT_HISTORY, ALERT_RULES, ALERT_TRANSITIONS
from app.models.alerts import HistoryRow, insert_history, rule_changes
from app.rules import Rule, RuleSet
from app.settings import Settings
from app.stream import entry_seq
from workers.database import Database

log = logging.getLogger("workers.alerts")

Entry = tuple[bytes, dict[bytes, bytes]]


@lru_cache(maxsize=8192)
def _second(seconds: int) -> str:
    # A batch's events share few distinct seconds; strftime is the dearest step per event.
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def format_time(ts_us: int) -> str:
    """Event time as the alert payload shows it: UTC, seconds, micros only when present."""
    seconds, micros = divmod(ts_us, 1_000_000)
    text = _second(seconds)
    return f"{text}.{micros:06d}" if micros else text


def _rule_tail(rule: Rule) -> bytes:
    """The end of the payload: which rule; the script closes the object with it."""
    body = orjson.dumps(
        {
            "rule_id": rule.rule_id,
            "tenant_id": rule.tenant_id,
            "metric": rule.metric,
            "op": rule.op,
            "threshold": rule.threshold,
        }
    )
    return b"," + body[1:]


Pair = tuple[int, str, str]
Observation = tuple[int, str, dict[str, Any]]
_NONE: list[Rule] = []


def observations(
    rules: RuleSet, events: Sequence[dict[str, Any]]
) -> dict[Pair, tuple[Rule, list[Observation]]]:
    """What the rules in memory match: per (rule, tenant, device), (ts, class, event) in
    event time order, since the state machine of each pair runs in event time."""
    out: dict[Pair, tuple[Rule, list[Observation]]] = {}
    for event in events:
        tenant = event["tenant_id"]
        scoped = rules.for_tenant(tenant)
        if scoped is None:
            continue
        metrics = event["metrics"]
        device, site = event["device_id"], event.get("site_id")
        for group in (
            scoped.everyone,
            scoped.by_device.get(device, _NONE),
            scoped.by_site.get(site, _NONE) if site is not None else _NONE,
        ):
            for rule in group:
                value = metrics.get(rule.metric)
                if value is None:
                    continue
                pair = (rule.rule_id, tenant, device)
                seen = out.get(pair)
                if seen is None:
                    seen = out[pair] = (rule, [])
                seen[1].append((event["ts"], rule.classify(value), event))
    for _, observed in out.values():
        if len(observed) > 1:
            observed.sort(key=itemgetter(0))
    return out


def script_calls(
    observed: dict[Pair, tuple[Rule, list[Observation]]], state_prefix: str, chunk: int
) -> Iterator[tuple[list[str], list[Any]]]:
    """The state keys and arguments of the transition script, about `chunk` observations a
    call; bounded calls keep Redis responsive. A pair's observations stay in one call."""
    pairs = iter(observed.items())
    pending = next(pairs, None)
    while pending is not None:
        rule_index: dict[tuple[str, int], int] = {}
        rule_args: list[Any] = []
        key_names: list[str] = []
        key_rules: list[str] = []
        devices: list[bytes] = []
        parts: dict[int, int] = {}
        event_parts: list[bytes] = []
        groups: list[str] = []
        while pending is not None and (not groups or len(groups) < chunk):
            (rule_id, tenant, device), (rule, rows) = pending
            r = rule_index.get((tenant, rule_id))
            if r is None:
                r = rule_index[(tenant, rule_id)] = len(rule_index) + 1
                rule_args += [
                    round(rule.for_s * 1_000_000),
                    round(rule.cooldown_s * 1_000_000),
                    _rule_tail(rule),
                ]
            key_names.append(state_key(state_prefix, tenant, rule_id, device))
            key_rules.append(str(r))
            devices.append(orjson.dumps(device))
            k = len(key_names)
            for ts, kind, event in rows:
                e = parts.get(id(event))
                if e is None:
                    event_parts.append(
                        b',"metrics":'
                        + orjson.dumps(event["metrics"])
                        + b',"time":"'
                        + format_time(ts).encode()
                        + b'","site_id":'
                        + orjson.dumps(event.get("site_id"))
                    )
                    e = parts[id(event)] = len(event_parts)
                groups.append(f"{k} {ts} {kind} {e}")
            pending = next(pairs, None)
        yield (
            key_names,
            [
                len(rule_index),
                *rule_args,
                len(key_names),
                " ".join(key_rules),
                *devices,
                len(event_parts),
                *event_parts,
                " ".join(groups),
            ],
        )


def history_row(alert_id: bytes | str, payload: bytes) -> HistoryRow:
    text = alert_id.decode() if isinstance(alert_id, bytes) else alert_id
    alert = orjson.loads(payload)
    ts = datetime.fromisoformat(alert["time"]).replace(tzinfo=UTC)
    return (
        alert["tenant_id"],
        text,
        entry_seq(text),
        alert["rule_id"],
        alert["device_id"],
        alert["site_id"],
        alert["metric"],
        alert["state"],
        float(alert["metrics"][alert["metric"]]),
        ts,
        payload.decode(),
    )


class Alerts:
    """The alert side of one worker."""

    def __init__(
        self, settings: Settings, redis: Redis, *, name: str, database: Database | None = None
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.name = name
        self.database = database or Database(settings, application_name="telemetry-alerts")
        self.rules = RuleSet()
        self.stream = AlertStream(
            redis,
            settings.alert_stream,
            settings.alert_channel,
            settings.alert_stream_maxlen,
            settings.alert_state_ttl_s,
        )
        self.loaded = asyncio.Event()
        # The rule sync and the history writer share one connection, one at a time.
        self._db_lock = asyncio.Lock()
        self._group_ready = False
        self._tasks: list[asyncio.Task[None]] = []

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
        delay = 0.1
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    # Subscribed before the sync: a change is in the sync or in a message.
                    await pubsub.subscribe(self.settings.alert_rules_channel)
                    delay = 0.1
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
            except (RedisError, OSError) as error:
                log.warning("rule subscription lost (%r); re-subscribing", error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _try_sync(self) -> None:
        try:
            await self.sync()
        except Exception as error:
            # Rules already in memory keep working; the next period tries again.
            log.warning("rule sync failed (%r)", error)
            async with self._db_lock:
                await self.database.reset()

    # Evaluation.

    async def evaluate(self, events: Sequence[dict[str, Any]]) -> None:
        """The worker's after_commit: run the committed events through the rules."""
        if not self.loaded.is_set():
            # Never evaluate without the rules: the batch fails and is retried instead.
            await asyncio.wait_for(self.loaded.wait(), timeout=5 * self.settings.alert_rule_sync_s)
        with ALERT_EVAL_SECONDS.time():
            observed = observations(self.rules, events)
            for keys, args in script_calls(
                observed, self.settings.alert_state_prefix, self.settings.alert_eval_chunk
            ):
                for _, state in await self.stream.transition(keys, args):
                    ALERT_TRANSITIONS.labels(state).inc()

    # History.

    async def record_history(self, block_ms: int | None = None) -> int:
        """Write one batch of new transitions to the history table; how many."""
        await self._ensure_group()
        reply: Any = await self.redis.xreadgroup(
            self.settings.alert_history_group,
            self.name,
            {self.settings.alert_stream: ">"},
            count=self.settings.alert_history_batch,
            block=block_ms,
        )
        entries: list[Entry] = reply[0][1] if reply else []
        await self._record(entries)
        return len(entries)

    async def reclaim_history(self) -> int:
        """Take over transitions a dead worker read but never recorded."""
        await self._ensure_group()
        reply: Any = await self.redis.xautoclaim(
            self.settings.alert_stream,
            self.settings.alert_history_group,
            self.name,
            min_idle_time=self.settings.claim_idle_ms,
            count=self.settings.alert_history_batch,
        )
        entries: list[Entry] = reply[1]
        await self._record(entries)
        return len(entries)

    async def _ensure_group(self) -> None:
        if not self._group_ready:
            await self.stream.ensure_group(self.settings.alert_history_group)
            self._group_ready = True

    async def _record(self, entries: list[Entry]) -> None:
        if not entries:
            return
        # An entry trimmed before it was recorded comes back empty: nothing left to write.
        rows = [history_row(entry_id, fields[b"d"]) for entry_id, fields in entries if fields]
        async with self._db_lock:
            conn = await self.database.connection()
            await insert_history(conn, rows)
        await self.redis.xack(
            self.settings.alert_stream,
            self.settings.alert_history_group,
            *(entry_id for entry_id, _ in entries),
        )
        ALERT_HISTORY.inc(len(rows))

    async def write_history(self) -> None:
        next_claim = 0.0
        delay = 0.1
        while True:
            try:
                if time.monotonic() >= next_claim:
                    await self.reclaim_history()
                    next_claim = time.monotonic() + self.settings.claim_interval_s
                await self.record_history(block_ms=1000)
                delay = 0.1
            except Exception as error:
                # Unrecorded entries stay pending; the reclaim picks them up again.
                log.warning("alert history write failed (%r)", error)
                self._group_ready = False
                async with self._db_lock:
                    await self.database.reset()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

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
