"""Group commit: requests that share one enqueue each get their own answer."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from app.core.settings import Settings
from app.ingest.group import GroupCommit
from app.main import create_app
from tests.helpers import event


@pytest.fixture
async def grouped(settings: Settings, redis: Redis) -> AsyncIterator[FastAPI]:
    # A wide window, so the concurrent requests below surely share one call.
    application = create_app(settings.model_copy(update={"group_window_ms": 50}))
    async with application.router.lifespan_context(application):
        yield application


def client_for(application: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://t")


async def test_requests_of_one_shared_call_get_their_own_statuses(
    grouped: FastAPI, redis: Redis, settings: Settings
) -> None:
    async with client_for(grouped) as client:
        responses = await asyncio.gather(
            client.post("/v1/events", json=event("a", minute=1)),
            client.post("/v1/events", json=event("a", minute=1)),
            client.post("/v1/events", json={**event("bad"), "metrics": {"t": "hot"}}),
            client.post("/v1/events/batch", json=[event("b", minute=2), event("a", minute=1)]),
            client.post("/v1/events", json=event("c", device="d2", minute=3)),
        )
    single = [r.json() for r in responses]
    assert [r.status_code for r in responses] == [202, 202, 422, 202, 202]
    assert {single[0]["status"], single[1]["status"]} == {"accepted", "duplicate"}
    assert single[2]["error"]["field"] == "metrics.t"
    assert [r["status"] for r in single[3]["results"]] == ["accepted", "duplicate"]
    assert single[4] == {"event_id": "c", "status": "accepted"}
    # One stream entry for the four requests that reached the queue, in arrival order.
    entries: Any = await redis.xrange(settings.stream)
    assert len(entries) == 1
    lines = [orjson.loads(line) for line in entries[0][1][b"d"].split(b"\n")]
    assert [e["event_id"] for e in lines] == ["a", "b", "c"]


class FailingEnqueuer:
    """An enqueue that Redis drops in the middle of the shared call."""

    calls = 0

    async def enqueue(self, *args: Any) -> list[bool]:
        self.calls += 1
        raise RedisConnectionError("connection lost during the script")


async def test_a_redis_failure_in_a_shared_call_answers_each_request_503(
    grouped: FastAPI, settings: Settings
) -> None:
    failing = FailingEnqueuer()
    grouped.state.group_commit = GroupCommit(
        failing,  # type: ignore[arg-type]
        window_s=0.05,
        max_events=500,
        dedupe_window_s=settings.dedupe_window_s,
    )
    async with client_for(grouped) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/events", json=event(f"e{i}", minute=i)) for i in range(3)),
            client.post("/v1/events/batch", json=[event("b1"), event("b2", minute=5)]),
        )
    assert failing.calls == 1
    for response in responses:
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == str(settings.retry_after_s)
