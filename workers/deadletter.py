"""The dead-letter stream: entries and events the workers could not store, with the error.

Bounded (`MAXLEN ~ DEAD_LETTER_MAXLEN`: a flood of bad data cannot fill Redis), read and
replayed in pages by id range. Each dead letter keeps the stream sequence its data had, and
a replay puts it back with that sequence (the entry field `seq`), so the workers order it
as it was ingested: an old version replayed after a correction cannot overwrite it.
"""

from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from app.core.streams import entry_seq, text

Value = bytes | bytearray | memoryview | str | int | float
Fields = dict[Value, Value]


@dataclass(frozen=True, slots=True)
class Page:
    """Dead letters in [lo, hi], oldest first, and where the next page starts (None: done)."""

    letters: list[dict[str, Any]]
    next_id: str | None


class DeadLetters:
    def __init__(self, redis: Redis, stream: str, dead_stream: str, maxlen: int = 100_000) -> None:
        self.redis = redis
        self.stream = stream
        self.dead_stream = dead_stream
        self.maxlen = maxlen

    async def _add(self, fields: Fields) -> None:
        await self.redis.xadd(self.dead_stream, fields, maxlen=self.maxlen, approximate=True)

    async def add_entry(self, entry_id: bytes, payload: bytes, error: str, consumer: str) -> None:
        await self._add(
            {
                "kind": "entry",
                "entry_id": entry_id,
                "seq": entry_seq(entry_id),
                "error": error,
                "consumer": consumer,
                "d": payload,
            }
        )

    async def add_event(self, event: dict[str, Any], error: str, consumer: str) -> None:
        seq = event.get("seq")
        body = {k: v for k, v in event.items() if k != "seq"}
        fields: Fields = {
            "kind": "event",
            "error": error,
            "consumer": consumer,
            "d": orjson.dumps(body),
        }
        if seq is not None:
            fields["seq"] = seq
        await self._add(fields)

    async def size(self) -> int:
        return int(await self.redis.xlen(self.dead_stream))

    async def page(self, lo: str = "-", hi: str = "+", count: int = 100) -> Page:
        rows: Any = await self.redis.xrange(self.dead_stream, min=lo, max=hi, count=count + 1)
        letters = [
            {"id": text(dead_id), **{text(k): text(v) for k, v in f.items()}}
            for dead_id, f in rows[:count]
        ]
        next_id = text(rows[count][0]) if len(rows) > count else None
        return Page(letters, next_id)

    async def entries(self, count: int = 100) -> list[dict[str, Any]]:
        return (await self.page(count=count)).letters

    async def replay(
        self,
        dead_ids: list[str] | None = None,
        *,
        lo: str = "-",
        hi: str = "+",
        page: int = 500,
        dry_run: bool = False,
    ) -> int:
        """Put dead letters in [lo, hi] (or only `dead_ids`) back on the ingest stream, past
        the dedupe marks they already set, a page at a time; with dry_run, only count."""
        wanted = set(dead_ids) if dead_ids is not None else None
        replayed = 0
        start = lo
        while True:
            rows: Any = await self.redis.xrange(self.dead_stream, min=start, max=hi, count=page)
            for dead_id, fields in rows:
                if wanted is not None and text(dead_id) not in wanted:
                    continue
                replayed += 1
                if dry_run:
                    continue
                payload = fields[b"d"]
                entry: Fields = {"n": payload.count(b"\n") + 1, "d": payload}
                if b"seq" in fields:
                    entry["seq"] = fields[b"seq"]
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.xadd(self.stream, entry)
                    pipe.xdel(self.dead_stream, dead_id)
                    await pipe.execute()
            if len(rows) < page:
                return replayed
            start = "(" + text(rows[-1][0])
