"""`python -m scripts.bench_dedupe [--events 1000000]`: bytes of dedupe memory per event.

Starts a private Redis (defaults: set-max-intset-entries 512), enqueues the events of one
tenant through the ingest script in requests of 1,000, spread over minutes as live traffic
is (`--rate` events per second of event time), and prints the memory of the dedupe sets per
event, beside one `SET key EX` per event (the design before, measured on a sample), and the
script's rate.
"""

import argparse
import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

from redis.asyncio import Redis

from app.ingest.enqueue import Enqueuer

PREFIX = "bench:seen"
TENANT = "bench"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _memory(redis: Redis, match: str) -> int:
    total = 0
    async for key in redis.scan_iter(match=match, count=1000):
        total += int(await redis.memory_usage(key, samples=0) or 0)
    return total


async def run(port: int, events: int, rate: float, batch: int) -> dict[str, Any]:
    redis = Redis(port=port)
    try:
        for _ in range(100):
            try:
                await redis.ping()
                break
            except OSError:
                await asyncio.sleep(0.05)
        enqueuer = Enqueuer(redis, "bench:events", PREFIX)
        base_us = int(time.time() * 1e6)
        started = time.perf_counter()
        for first in range(0, events, batch):
            keys = [
                (f"device-{i % 2000}-{i}", base_us + int(i / rate * 1e6))
                for i in range(first, min(first + batch, events))
            ]
            await enqueuer.enqueue(TENANT, keys, [b"{}"] * len(keys), 86400)
            await redis.delete("bench:events")
        elapsed = time.perf_counter() - started
        sets = await _memory(redis, f"{PREFIX}:*")
        keys_count = sum([1 async for _ in redis.scan_iter(match=f"{PREFIX}:*", count=1000)])
        sample = 100_000
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(sample):
                pipe.set(f"old:seen:{TENANT}:device-{i % 2000}-{i}", "1", ex=86400)
            await pipe.execute()
        old = await _memory(redis, "old:seen:*")
        info: Any = await redis.info("memory")
    finally:
        await redis.aclose()
    return {
        "events": events,
        "sets": keys_count,
        "bytes_per_event": sets / events,
        "old_bytes_per_event": old / sample,
        "script_events_per_s": events / elapsed,
        "allocator_fragmentation": info.get("allocator_frag_ratio"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_dedupe", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=800.0, help="events per second of ts")
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    port = _free_port()
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(port),
             "--save", "", "--appendonly", "no", "--dir", data],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            result = asyncio.run(run(port, args.events, args.rate, args.batch))
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(
        f"dedupe memory at {result['events']:,} events ({args.rate:g}/s of event time): "
        f"{result['bytes_per_event']:.1f} B/event in {result['sets']:,} sets "
        f"(one key per event: {result['old_bytes_per_event']:.1f} B/event); "
        f"script {result['script_events_per_s']:,.0f} events/s"
    )


if __name__ == "__main__":
    main()
