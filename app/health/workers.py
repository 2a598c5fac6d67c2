"""The workers' health keys, as /readyz and /v1/pipeline list them."""

import orjson
from redis.asyncio import Redis


async def live_workers(redis: Redis, prefix: str) -> dict[str, str]:
    """Each live worker's health key: "ok", or the fault it is waiting out. Reported, not
    judged: a stuck worker does not stop this API process from accepting events."""
    found: dict[str, str] = {}
    async for key in redis.scan_iter(match=f"{prefix}:*", count=200):
        raw = await redis.get(key)
        if raw is None:
            continue
        body = orjson.loads(raw)
        status = "ok" if body["status"] == "ok" else f"fault: {body['fault']}: {body['detail']}"
        found[str(body["name"])] = status
    return dict(sorted(found.items()))
