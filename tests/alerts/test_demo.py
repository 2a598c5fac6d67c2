"""The seed-004 alert walkthrough, verbatim, against a running API server and worker."""

import asyncio
import contextlib
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import orjson
import pytest
from redis.asyncio import Redis

from app.core.settings import Settings
from tests.conftest import ROOT

RULE = {"device_id": "deviceA", "metric": "temp", "op": ">", "threshold": 32}
EVENT = {
    "event_id": "t002",
    "device_id": "deviceA",
    "timeStamp": "2025-01-15T11:01:00",
    "metrics": {"temp": 40},
    "tags": [],
}


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=15)
        except TimeoutError:
            process.kill()
            await process.wait()


@pytest.fixture
async def stack(settings: Settings, redis: Redis, db: asyncpg.Connection) -> AsyncIterator[str]:
    """`uvicorn app.main:app` and `python -m workers` on the test database and Redis db."""
    tag = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        # The machine's test Redis keeps nothing on disk (tests/ingest/test_durability.py).
        "ALLOW_VOLATILE_QUEUE": "true",
        # As `make run` on a loopback address: the walkthrough's curl commands send no key.
        "AUTH_DISABLED": "true",
        "ALERT_CHANNEL": f"test:{tag}:alerts",
        "ALERT_RULES_CHANNEL": f"test:{tag}:rules",
        "LOG_LEVEL": "WARNING",
    }
    # The test binds the port and hands the socket over, so no other process can take it.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    processes: list[asyncio.subprocess.Process] = []
    try:
        processes.append(
            await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "uvicorn", "app.main:app"),
                *("--fd", str(listener.fileno()), "--log-level", "warning", "--no-access-log"),
                env=env,
                cwd=ROOT,
                pass_fds=(listener.fileno(),),
            )
        )
        processes.append(
            await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "workers", "--name", f"demo-{tag}"), env=env, cwd=ROOT
            )
        )
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=2) as http, asyncio.timeout(30):
            while True:
                assert all(p.returncode is None for p in processes), "a process exited"
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield base
    finally:
        listener.close()
        for process in processes:
            await _stop(process)


async def test_seed_004_alert_walkthrough(stack: str) -> None:
    async with (
        httpx.AsyncClient(base_url=stack, timeout=10) as http,
        # curl -N "http://localhost:8000/v1/alerts/stream?device_id=deviceA"
        http.stream("GET", "/v1/alerts/stream", params={"device_id": "deviceA"}) as sse,
    ):
        assert sse.status_code == 200
        lines = sse.aiter_lines()
        assert await anext(lines) == ": connected"

        registered = await http.post("/v1/alerts", json=RULE)
        assert registered.status_code == 201, registered.text
        triggered = await http.post("/v1/events", json=EVENT)
        assert triggered.status_code == 202, triggered.text

        async with asyncio.timeout(10):
            line = await anext(lines)
            while not line.startswith("data: "):
                line = await anext(lines)
        alert = orjson.loads(line.removeprefix("data: "))
        assert alert["device_id"] == "deviceA"
        assert alert["metrics"] == {"temp": 40}
        assert alert["time"] == "2025-01-15 11:01:00"
        assert alert["state"] == "firing" and alert["rule_id"] == registered.json()["id"]
