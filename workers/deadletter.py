"""The dead-letter stream: entries and events the workers could not store, with the error."""

from typing import Any

import orjson
from redis.asyncio import Redis


class DeadLetters:
    def __init__(self, redis: Redis, stream: str, dead_stream: str) -> None:
        self.redis = redis
        self.stream = stream
        self.dead_stream = dead_stream

    async def add_entry(self, entry_id: bytes, payload: bytes, error: str, consumer: str) -> None:
        await self.redis.xadd(
            self.dead_stream,
            {
                "kind": "entry",
                "entry_id": entry_id,
                "error": error,
                "consumer": consumer,
                "d": payload,
            },
        )

    async def add_event(self, event: dict[str, Any], error: str, consumer: str) -> None:
        event = {k: v for k, v in event.items() if k != "seq"}
        await self.redis.xadd(
            self.dead_stream,
            {"kind": "event", "error": error, "consumer": consumer, "d": orjson.dumps(event)},
        )

    async def entries(self, count: int = 100) -> list[dict[str, Any]]:
        rows: Any = await self.redis.xrange(self.dead_stream, count=count)
        return [
            {
                "id": dead_id.decode(),
                **{k.decode(): v.decode(errors="replace") for k, v in f.items()},
            }
            for dead_id, f in rows
        ]

    async def replay(self, dead_ids: list[str] | None = None) -> int:
        """Put dead letters back on the ingest stream, past the dedupe marks they already set."""
        rows: Any = await self.redis.xrange(self.dead_stream)
        replayed = 0
        for dead_id, fields in rows:
            if dead_ids is not None and dead_id.decode() not in dead_ids:
                continue
            payload = fields[b"d"]
            count = payload.count(b"\n") + 1
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xadd(self.stream, {"n": count, "d": payload})
                pipe.xdel(self.dead_stream, dead_id)
                await pipe.execute()
            replayed += 1
        return replayed
