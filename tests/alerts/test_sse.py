"""The alert stream (server-sent events): live hits, resume, resync, slow clients, cleanup."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import uvicorn
from fastapi import FastAPI
from redis.asyncio import Redis

from app.alerts.fanout import AlertFanout
from app.alerts.feed import AlertFeed
from app.alerts.state import AlertStream
from app.core.settings import Settings
from app.main import create_app
from tests.helpers import wait_for
from workers.alerts import Alerts

BASE_TS_US = 1_748_772_000_000_000  # 2025-06-01T10:00:00Z


@pytest.fixture
async def alerts(
    alert_settings: Settings, redis: Redis, db: asyncpg.Connection
) -> AsyncIterator[Alerts]:
    """A worker's alert side with one rule: temp > 32 on every device."""
    await db.execute(
        "INSERT INTO alert_rules (tenant_id, metric, op, threshold, version)"
        " VALUES ('default', 'temp', '>', 32, 1)"
    )
    await db.execute("INSERT INTO alert_rule_versions VALUES ('default', 1)")
    worker_alerts = Alerts(alert_settings, redis, name="a1")
    await worker_alerts.sync()
    yield worker_alerts
    await worker_alerts.database.close()


async def hit(alerts: Alerts, device: str, second: int, temp: float) -> None:
    """One stored event of a device, as the worker's after_commit sees it."""
    event = {
        "event_id": f"{device}-{second}",
        "tenant_id": "default",
        "device_id": device,
        "site_id": "site-1",
        "ts": BASE_TS_US + second * 1_000_000,
        "metrics": {"temp": temp},
        "tags": [],
        "seq": second,
    }
    await alerts.evaluate([event])


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """The app under uvicorn on a free port of 127.0.0.1, in this event loop."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        await wait_for(lambda: _true(server.started or task.done()))
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def _true(value: bool) -> bool:
    return value


class Reader:
    """Server-sent events off a streaming response, one block at a time."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def block(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        async with asyncio.timeout(10):
            async for line in self.lines:
                if not line:
                    if fields:
                        return fields
                    continue
                name, _, value = line.partition(":")
                fields.setdefault(name or "comment", []).append(value.lstrip(" "))
        raise AssertionError("the stream ended")

    async def alert(self) -> dict[str, Any]:
        """The next alert, skipping heartbeats."""
        while True:
            block = await self.block()
            if "data" in block:
                assert "event" not in block, block
                return {"id": block["id"][0], **orjson.loads(block["data"][0])}


@contextlib.asynccontextmanager
async def stream(
    base: str, headers: dict[str, str] | None = None, **params: Any
) -> AsyncIterator[Reader]:
    async with (
        httpx.AsyncClient(base_url=base, timeout=10) as http,
        http.stream("GET", "/v1/alerts/stream", params=params, headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = Reader(response)
        assert (await reader.block())["comment"] == ["connected"]
        yield reader


async def test_a_hit_reaches_the_stream_and_the_subscription_is_freed(
    alert_settings: Settings, redis: Redis, alerts: Alerts
) -> None:
    app = create_app(alert_settings)
    async with serve(app) as base:
        fanout: AlertFanout = app.state.alert_fanout
        await wait_for(lambda: _true(fanout.listening.is_set()))
        async with stream(base, device_id="d1") as mine, stream(base) as everyone:
            assert fanout.subscribers == 2
            # One Redis subscription for the whole process, however many clients.
            assert (await redis.pubsub_numsub(alert_settings.alert_channel))[0][1] == 1

            await hit(alerts, "d2", 0, 50.0)
            await hit(alerts, "d1", 60, 40.0)
            alert = await mine.alert()
            assert alert["device_id"] == "d1" and alert["state"] == "firing"
            assert alert["metrics"] == {"temp": 40.0} and alert["time"] == "2025-06-01 10:01:00"
            assert [(await everyone.alert())["device_id"] for _ in range(2)] == ["d2", "d1"]

            # Heartbeats are comments, with no id.
            while (block := await mine.block()).get("comment") != ["heartbeat"]:
                pass
            assert "id" not in block
        await wait_for(lambda: _true(fanout.subscribers == 0))
        assert (await redis.pubsub_numsub(alert_settings.alert_channel))[0][1] == 1


async def test_a_reconnect_resumes_without_losing_or_repeating(
    alert_settings: Settings, redis: Redis, alerts: Alerts
) -> None:
    app = create_app(alert_settings)
    async with serve(app) as base:
        fanout: AlertFanout = app.state.alert_fanout
        await wait_for(lambda: _true(fanout.listening.is_set()))
        async with stream(base, device_id="d1") as reader:
            await hit(alerts, "d1", 0, 40.0)
            first = await reader.alert()
        await wait_for(lambda: _true(fanout.subscribers == 0))

        # Missed while away: two for d1, one for another device.
        await hit(alerts, "d1", 60, 20.0)
        await hit(alerts, "d9", 60, 40.0)
        await hit(alerts, "d1", 120, 40.0)
        async with stream(base, {"Last-Event-ID": first["id"]}, device_id="d1") as reader:
            replayed = [await reader.alert(), await reader.alert()]
            await hit(alerts, "d1", 180, 20.0)
            live = await reader.alert()
        got = [first, *replayed, live]
        assert [a["state"] for a in got] == ["firing", "resolved", "firing", "resolved"]
        assert [a["time"][-8:] for a in got] == ["10:00:00", "10:01:00", "10:02:00", "10:03:00"]
        ids = [tuple(int(part) for part in a["id"].split("-")) for a in got]
        assert ids == sorted(set(ids))

        async with httpx.AsyncClient(base_url=base) as http:
            bad = await http.get("/v1/alerts/stream", headers={"Last-Event-ID": "yesterday"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "Last-Event-ID"


@pytest.fixture
async def feeds(alert_settings: Settings, redis: Redis) -> tuple[AlertFanout, AlertStream]:
    """A fan-out without its Redis subscription: the tests hand it messages themselves."""
    alert_stream = AlertStream(
        redis, alert_settings.alert_stream, alert_settings.alert_channel, 1000, 60
    )
    return AlertFanout(redis, alert_settings.alert_channel, queue_size=2), alert_stream


async def alert_ids(redis: Redis, settings: Settings) -> list[str]:
    entries: Any = await redis.xrange(settings.alert_stream)
    return [entry_id.decode() for entry_id, _ in entries]


async def published(redis: Redis, settings: Settings, alert_id: str) -> bytes:
    entries: Any = await redis.xrange(settings.alert_stream, min=alert_id, max=alert_id)
    payload: bytes = entries[0][1][b"d"]
    return alert_id.encode() + b" " + payload


async def test_too_old_or_unknown_ids_get_a_resync_event_without_an_id(
    alert_settings: Settings, redis: Redis, alerts: Alerts, feeds: tuple[AlertFanout, AlertStream]
) -> None:
    fanout, alert_stream = feeds
    for second, temp in ((0, 40.0), (60, 20.0), (120, 40.0)):
        await hit(alerts, "d1", second, temp)
    ids = await alert_ids(redis, alert_settings)
    await redis.xtrim(alert_settings.alert_stream, maxlen=1, approximate=False)

    for second, temp, stale in ((180, 20.0, ids[0]), (240, 40.0, "99999999999999-0")):
        feed = AlertFeed(fanout, alert_stream, "default")
        await feed.open(stale)
        frames = feed.frames()
        assert (await anext(frames)).startswith(b": connected")
        resync = await anext(frames)
        assert resync.startswith(b"event: resync\ndata: ") and b"id:" not in resync
        # Then live alerts, with their ids.
        await hit(alerts, "d1", second, temp)
        ids = await alert_ids(redis, alert_settings)
        fanout.dispatch(await published(redis, alert_settings, ids[-1]))
        assert (await anext(frames)).startswith(b"id: " + ids[-1].encode() + b"\ndata: {")
        await frames.aclose()
    assert fanout.subscribers == 0

    # An id the stream still covers replays from there, without a resync.
    feed = AlertFeed(fanout, alert_stream, "default")
    await feed.open(ids[-2])
    frames = feed.frames()
    await anext(frames)
    assert (await anext(frames)).startswith(b"id: " + ids[-1].encode())
    await frames.aclose()


async def test_replay_and_live_overlap_is_sent_once(
    alert_settings: Settings, redis: Redis, alerts: Alerts, feeds: tuple[AlertFanout, AlertStream]
) -> None:
    fanout, alert_stream = feeds
    feed = AlertFeed(fanout, alert_stream, "default")
    await feed.open(None)
    frames = feed.frames()
    await anext(frames)  # subscribed from here on
    await hit(alerts, "d1", 0, 40.0)
    first = (await alert_ids(redis, alert_settings))[-1]
    # The alert arrives live as well as through the replay; then a newer one, live only.
    fanout.dispatch(await published(redis, alert_settings, first))
    assert (await anext(frames)).startswith(b"id: " + first.encode())
    await hit(alerts, "d1", 60, 20.0)
    second = (await alert_ids(redis, alert_settings))[-1]
    fanout.dispatch(await published(redis, alert_settings, second))
    assert (await anext(frames)).startswith(b"id: " + second.encode())

    # The subscription was lost and re-made: what Pub/Sub dropped comes from the stream.
    await hit(alerts, "d1", 120, 40.0)
    third = (await alert_ids(redis, alert_settings))[-1]
    fanout.mark_gap()
    assert (await anext(frames)).startswith(b"id: " + third.encode())
    await frames.aclose()


async def test_a_slow_client_is_ended_with_an_overflow_event_and_others_keep_going(
    feeds: tuple[AlertFanout, AlertStream],
) -> None:
    fanout, alert_stream = feeds
    slow_feed, fast_feed = (AlertFeed(fanout, alert_stream, "default") for _ in range(2))
    await slow_feed.open(None)
    await fast_feed.open(None)
    slow, fast = slow_feed.frames(), fast_feed.frames()
    await anext(slow)
    await anext(fast)
    assert fanout.subscribers == 2
    for n in range(1, 5):
        payload = orjson.dumps({"tenant_id": "default", "device_id": "d1", "n": n})
        fanout.dispatch(f"{n}-0 ".encode() + payload)
        assert (await anext(fast)).startswith(f"id: {n}-0\ndata: ".encode())
    # The slow client read nothing: past its queue of two it is dropped and told so.
    assert fanout.subscribers == 1
    overflow = await anext(slow)
    assert overflow.startswith(b"event: overflow\ndata: ") and b"id:" not in overflow
    with pytest.raises(StopAsyncIteration):
        await anext(slow)
    await fast.aclose()
    assert fanout.subscribers == 0
