"""One Pub/Sub subscription per API process, fanned out to the connected alert clients.

Each client gets a bounded queue. The listener never waits for a client: a client whose
queue is full is dropped from the fan-out and told so, and it resumes from the alert
stream with its last event id. When the subscription itself was lost and re-made,
every client is told to catch up from the stream, since Pub/Sub kept nothing meanwhile.
"""

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from app.core.metrics import ALERT_SSE_CLIENTS, ALERT_SSE_OVERFLOWS
from app.core.retry import healthy, redis_fault, retrying

log = logging.getLogger("app.fanout")


@dataclass(eq=False, slots=True)
class Subscription:
    """One client's filter and queue of (alert id, payload)."""

    tenant: str
    device_id: str | None = None
    site_id: str | None = None
    rule_id: int | None = None
    limit: int = 1000
    items: deque[tuple[str, bytes]] = field(default_factory=deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    overflowed: bool = False
    gap: bool = False

    def matches(self, alert: dict[str, Any]) -> bool:
        return (
            alert.get("tenant_id") == self.tenant
            and (self.device_id is None or alert.get("device_id") == self.device_id)
            and (self.site_id is None or alert.get("site_id") == self.site_id)
            and (self.rule_id is None or alert.get("rule_id") == self.rule_id)
        )

    def offer(self, alert_id: str, payload: bytes) -> bool:
        """Queue an alert; False (and flagged) when the client has fallen behind."""
        if len(self.items) >= self.limit:
            self.overflowed = True
            self.items.clear()
            self.ready.set()
            return False
        self.items.append((alert_id, payload))
        self.ready.set()
        return True


class AlertFanout:
    def __init__(self, redis: Redis, channel: str, queue_size: int) -> None:
        self.redis = redis
        self.channel = channel
        self.queue_size = queue_size
        self._subscriptions: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="alert-fanout")

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Cancel the listener, waiting a bounded time: redis-py's Pub/Sub can swallow a
        cancel that lands just after SUBSCRIBE, and a shutdown must not hang on it."""
        if self._task is not None:
            self._task.cancel()
            done, _ = await asyncio.wait({self._task}, timeout=timeout_s)
            if not done:
                log.warning("the alert subscription did not stop within %.1f s", timeout_s)
            elif not self._task.cancelled() and self._task.exception() is not None:
                log.warning("the alert subscription ended with %r", self._task.exception())
            self._task = None

    def clients_of(self, tenant: str) -> int:
        return sum(1 for sub in self._subscriptions if sub.tenant == tenant)

    def subscribe(
        self,
        tenant: str,
        *,
        device_id: str | None = None,
        site_id: str | None = None,
        rule_id: int | None = None,
    ) -> Subscription:
        sub = Subscription(tenant, device_id, site_id, rule_id, limit=self.queue_size)
        self._subscriptions.add(sub)
        ALERT_SSE_CLIENTS.inc()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)
            ALERT_SSE_CLIENTS.dec()

    def dispatch(self, message: bytes) -> None:
        """Hand one published alert ("<id> <payload>") to every client it concerns."""
        raw_id, _, payload = message.partition(b" ")
        try:
            alert = orjson.loads(payload)
        except orjson.JSONDecodeError:
            log.warning("ignored an undecodable alert message %r", message[:200])
            return
        alert_id = raw_id.decode()
        for sub in list(self._subscriptions):
            if sub.matches(alert) and not sub.offer(alert_id, payload):
                self.unsubscribe(sub)
                ALERT_SSE_OVERFLOWS.inc()

    async def _run(self) -> None:
        lost = False

        async def on_retry(error: BaseException) -> None:
            nonlocal lost
            self.listening.clear()
            lost = True

        async for attempt in retrying("alert subscription", on=redis_fault, on_retry=on_retry):
            with attempt:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self.listening.set()
                    healthy(attempt.retry_state)
                    if lost:
                        self.mark_gap()
                    while True:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=1.0
                        )
                        if message is not None and message["type"] == "message":
                            self.dispatch(message["data"])

    def mark_gap(self) -> None:
        """Tell every client to catch up from the stream: Pub/Sub kept nothing meanwhile."""
        for sub in self._subscriptions:
            sub.gap = True
            sub.ready.set()
