"""What one alert stream client reads: a replay from the alert stream, then live alerts.

Every alert frame carries its alert stream id; control frames (resync, overflow) carry
none, so a client's Last-Event-ID always names a real alert. The client is subscribed to
the fan-out before the replay starts and live alerts at or below the last id sent are
skipped, so the switch from replay to live neither loses nor repeats an alert.
"""

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson

from app.alerts.fanout import AlertFanout, Subscription
from app.alerts.state import AlertStream
from app.core.errors import InvalidInput
from app.core.streams import StreamId, parse_id


def alert_frame(alert_id: str, payload: bytes) -> bytes:
    return b"id: " + alert_id.encode() + b"\ndata: " + payload + b"\n\n"


def control_frame(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class AlertFeed:
    def __init__(
        self,
        fanout: AlertFanout,
        stream: AlertStream,
        tenant: str,
        *,
        device_id: str | None = None,
        site_id: str | None = None,
        rule_id: int | None = None,
        retry_ms: int = 2000,
        page: int = 500,
    ) -> None:
        self.fanout = fanout
        self.stream = stream
        self.filters: dict[str, Any] = {
            "device_id": device_id,
            "site_id": site_id,
            "rule_id": rule_id,
        }
        self.tenant = tenant
        self.retry_ms = retry_ms
        self.page = page
        self.start: StreamId = (0, 0)
        # The newest alert id this client has been sent (or skipped as not its own).
        self.last: StreamId = (0, 0)
        self.resync: str | None = None

    async def open(self, last_event_id: str | None) -> None:
        """Decide where the feed starts; done before the response so Redis faults are a 503."""
        position = await self.stream.position()
        self.start = position.last
        if last_event_id is None:
            return
        try:
            requested = parse_id(last_event_id)
        except ValueError:
            raise InvalidInput(
                "must be an alert id such as 1736938860000-0", field="Last-Event-ID"
            ) from None
        if not position.exists or requested > position.last:
            self.resync = "this id is unknown to the alert stream"
        elif position.lost_after(requested):
            self.resync = "alerts after this id are no longer kept in the stream"
        else:
            self.start = requested

    async def frames(self) -> AsyncGenerator[bytes, None]:
        sub = self.fanout.subscribe(self.tenant, **self.filters)
        try:
            yield b": connected\nretry: " + str(self.retry_ms).encode() + b"\n\n"
            if self.resync is not None:
                yield control_frame(
                    "resync", {"reason": self.resync, "history": "/v1/alerts/history"}
                )
            self.last = self.start
            async for frame in self._replay(sub):
                yield frame
            while True:
                await sub.ready.wait()
                sub.ready.clear()
                if sub.overflowed:
                    yield control_frame(
                        "overflow",
                        {"reason": "this client fell behind; reconnect with Last-Event-ID"},
                    )
                    return
                if sub.gap:
                    sub.gap = False
                    async for frame in self._replay(sub):
                        yield frame
                while sub.items:
                    alert_id, payload = sub.items.popleft()
                    position = parse_id(alert_id)
                    if position <= self.last:
                        continue
                    self.last = position
                    yield alert_frame(alert_id, payload)
        finally:
            self.fanout.unsubscribe(sub)

    async def _replay(self, sub: Subscription) -> AsyncIterator[bytes]:
        """The stream's entries after the last id sent, in pages."""
        while True:
            entries = await self.stream.read_after(self.last, self.page)
            for alert_id, payload in entries:
                self.last = parse_id(alert_id)
                if sub.matches(orjson.loads(payload)):
                    yield alert_frame(alert_id, payload)
            if len(entries) < self.page:
                return
