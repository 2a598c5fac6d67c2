"""`python -m scripts.bench_durability [--seconds 5]`: what each durability level costs.

For each level (volatile, os-buffered, fsync, replicated) a private Redis (and a replica)
is started under a temporary folder on this disk, and the ingest script is driven as the
API drives it, with 16 concurrent callers, for single events and for batches of 100. It
prints events/s per level and the ratio to the volatile queue.
"""

import argparse
import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from redis.asyncio import Redis

from app.ingest.enqueue import Enqueuer

LEVELS = {
    "volatile": ["--appendonly", "no"],
    "os-buffered": ["--appendonly", "yes", "--appendfsync", "everysec"],
    "fsync": ["--appendonly", "yes", "--appendfsync", "always"],
    "replicated": ["--appendonly", "yes", "--appendfsync", "everysec"],
}


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def servers(level: str, folder: Path) -> Iterator[int]:
    binary = shutil.which("redis-server") or "redis-server"
    primary = _port()
    started = []
    replica = [["--replicaof", "127.0.0.1", str(primary)]] if level == "replicated" else []
    for index, extra in enumerate([[], *replica]):
        port = primary if index == 0 else _port()
        data = folder / f"{level}-{port}"
        data.mkdir()
        command = [binary, "--port", str(port), "--save", "", "--dir", str(data)]
        command += [*LEVELS[level], *extra]
        started.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
    try:
        yield primary
    finally:
        for process in started:
            process.kill()
            process.wait()


async def drive(port: int, level: str, batch: int, seconds: float) -> float:
    redis = Redis(port=port)
    for _ in range(200):
        try:
            info = await redis.info("replication")
            if level != "replicated" or info.get("slave0", {}).get("state") == "online":
                break
        except OSError:
            pass
        await asyncio.sleep(0.05)
    enqueuer = Enqueuer(
        redis, "bench:events", "bench:seen",
        replica_wait_ms=1000 if level == "replicated" else None,
    )  # fmt: skip
    done = 0
    deadline = time.perf_counter() + seconds
    base = int(time.time() * 1e6)

    async def caller(index: int) -> None:
        nonlocal done
        n = 0
        while time.perf_counter() < deadline:
            keys = [(f"c{index}-{n}-{i}", base + n) for i in range(batch)]
            await enqueuer.enqueue("t", keys, [b"{}"] * batch, 86400)
            n += 1
            done += batch

    started = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(16)))
    rate = done / (time.perf_counter() - started)
    await redis.aclose()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_durability", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        for batch in (1, 100):
            base_rate = 0.0
            for level in LEVELS:
                with servers(level, Path(tmp)) as port:
                    rate = asyncio.run(drive(port, level, batch, args.seconds))
                base_rate = base_rate or rate
                print(f"batch {batch:>3}  {level:<11}  {rate:>9,.0f} events/s  "
                      f"{rate / base_rate:.2f}x of volatile")  # fmt: skip


if __name__ == "__main__":
    main()
