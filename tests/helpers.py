"""Small helpers shared by the tests."""

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

SEED_SINGLE = {
    "event_id": "e001",
    "device_id": "deviceA",
    "timeStamp": "2025-01-15T10:00:00",
    "metrics": {"temp": 34.2, "cpu": 0.44},
    "tags": ["room:101", "sensor:v2"],
}
SEED_BATCH = [
    {
        "event_id": "e002",
        "device_id": "deviceA",
        "timeStamp": "2025-01-15T10:02:00",
        "metrics": {"temp": 30},
        "tags": ["room:101"],
    },
    {
        "event_id": "e003",
        "device_id": "deviceA",
        "timeStamp": "2025-01-15T10:03:00",
        "metrics": {"temp": 35},
        "tags": ["room:102"],
    },
]


def event(event_id: str, device: str = "d1", minute: int = 0, **metrics: float) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "device_id": device,
        "ts": f"2025-06-01T10:{minute:02d}:00Z",
        "site_id": "site-1",
        "metrics": metrics or {"temp": 20.0 + minute},
    }


async def post_batch(client: httpx.AsyncClient, events: list[dict[str, Any]]) -> dict[str, Any]:
    response = await client.post("/v1/events/batch", json=events)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_for(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    """Wait on a condition with a deadline, never a bare sleep."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not met within {seconds} s")


def examples(count: int) -> int:
    """A property test's example budget, scaled by HYPOTHESIS_SCALE for the long random runs
    (`python -m scripts.fuzz`)."""
    return count * int(os.environ.get("HYPOTHESIS_SCALE", "1"))
