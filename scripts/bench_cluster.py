"""`python -m scripts.bench_cluster [--seconds 5]`: the ingest script through 1 Redis and
through 1, 3 and 6 stream shards of a local 3-master Redis Cluster.

Drives the enqueue as the API does (16 concurrent callers, batches of 100 events of about
200 bytes, each batch over many devices, so over every shard) and prints events/s, and
the Redis CPU each event cost (INFO cpu, all masters), which is what bounds a master
when it has a core of its own: a master takes about 1 / (CPU per event) events/s.
Everything is co-located on this box (client, every node): the totals say what the
client and the shared cores allow, the CPU per event what a master would on its own core.
With --replicated the cluster has a replica per master and every call waits for it.
"""

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from app.core.redis import Primaries, create_cluster, initialize
from app.core.settings import Settings
from app.core.shards import all_shards
from app.ingest.cluster import ShardedEnqueuer
from app.ingest.enqueue import Enqueuer, EventKey
from scripts.cluster import Cluster, free_base_port
from scripts.services import redis_server_args
from scripts.stack import free_port

CALLERS = 16
BATCH = 100
DEVICES = 5000


def payload(n: int) -> bytes:
    return orjson.dumps(
        {"event_id": f"e{n}", "tenant_id": "t", "device_id": f"d{n % DEVICES}",
         "site_id": "site-1", "ts": 1_750_000_000_000_000 + n,
         "metrics": {"power_w": 1234.5, "temp": 21.5, "volt": 230.1}, "tags": ["a:b"]}
    )  # fmt: skip


async def cpu(clients: list[Redis]) -> list[float]:
    found = []
    for client in clients:
        info: Any = await client.info("cpu")
        found.append(float(info["used_cpu_sys"]) + float(info["used_cpu_user"]))
    return found


async def drive(enqueue: Any, masters: list[Redis], seconds: float) -> tuple[float, float]:
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller(index: int) -> None:
        nonlocal done
        n = 0
        while time.perf_counter() < deadline:
            first = (index * 1_000_000 + n) * BATCH
            keys: list[EventKey] = [
                (f"e{first + i}", 1_750_000_000_000_000 + i, f"d{(first + i) % DEVICES}")
                for i in range(BATCH)
            ]
            await enqueue("t", keys, [payload(first + i) for i in range(BATCH)], 86400)
            n += 1
            done += BATCH

    before = await cpu(masters)
    started = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(CALLERS)))
    elapsed = time.perf_counter() - started
    after = await cpu(masters)
    # Microseconds of Redis CPU per event, all masters together.
    spent = sum(b - a for a, b in zip(before, after, strict=True))
    return done / elapsed, spent / max(1, done) * 1e6


async def single(port: int, seconds: float) -> tuple[float, float]:
    redis = Redis(port=port)
    enqueuer = Enqueuer(redis, "bench:events", "bench:seen")
    try:
        return await drive(enqueuer.enqueue, [redis], seconds)
    finally:
        await redis.aclose()


async def sharded(
    cluster: Cluster, shards: int, seconds: float, replicated: bool
) -> tuple[float, float, str]:
    settings = Settings(redis_cluster_url=cluster.url, stream_shards=shards)
    client = create_cluster(settings)
    await initialize(client)
    primaries = Primaries(client)
    try:
        await client.initialize()
        layout = all_shards(settings)
        where = ",".join(
            str(getattr(client.get_node_from_key(s.stream), "port", "?")) for s in layout
        )
        enqueuer = ShardedEnqueuer(
            client, primaries, layout, replica_wait_ms=1000 if replicated else None
        )
        masters = [c for _, c in await primaries.masters()]
        rate, per_event = await drive(enqueuer.enqueue, masters, seconds)
        return rate, per_event, where
    finally:
        await primaries.aclose()
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_cluster", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--replicated", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        port = free_port()
        data = Path(tmp) / "single"
        data.mkdir()
        server = shutil.which("redis-server") or "redis-server"
        process = subprocess.Popen(redis_server_args(server, port, data), stdout=subprocess.DEVNULL)
        try:
            time.sleep(0.3)  # a fresh local redis-server; the first call retries anyway
            rate, per_event = asyncio.run(single(port, args.seconds))
            print(
                f"1 Redis, 1 stream       {rate:>9,.0f} events/s  {per_event:5.1f} µs Redis CPU/event"
            )
        finally:
            process.terminate()
            process.wait()
        replicas = 1 if args.replicated else 0
        cluster = Cluster(Path(tmp), masters=3, replicas=replicas, port=free_base_port(6))
        cluster.start()
        try:
            for shards in (1, 3, 6):
                cluster.flush()
                rate, per_event, where = asyncio.run(
                    sharded(cluster, shards, args.seconds, args.replicated)
                )
                print(f"cluster, {shards} shard(s)     {rate:>9,.0f} events/s  "
                      f"{per_event:5.1f} µs Redis CPU/event  (shards on ports {where})")  # fmt: skip
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
