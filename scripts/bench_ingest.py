"""Ingest benchmark: API requests/s and events/s for 1, 100 and 1000-event batches, then
worker storage rates (COPY staging against unnest arrays, one worker and two side by side).

    python -m scripts.bench_ingest [--scale 1.0]

Uses its own database (telemetry_bench) and Redis db 14; prints a Markdown report and
writes it to results/bench_ingest.md. Figures are for comparison within one run.
"""

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import orjson
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from app.core.settings import Settings, dsn, get_settings
from scripts.sql.unnest import write_batch_unnest
from workers.consumer import Worker, Writer
from workers.database import Database
from workers.writes import write_batch

ROOT = Path(__file__).resolve().parent.parent
PORT = 8099


def bench_settings() -> Settings:
    base = get_settings()
    url = make_url(dsn(base.database_url)).set(database="telemetry_bench")
    return base.model_copy(
        update={
            "database_url": url.render_as_string(hide_password=False),
            "redis_url": base.redis_url.rsplit("/", 1)[0] + "/14",
            "backlog_max_entries": 10**9,
            "backlog_max_age_s": 10**9,
            "trim_interval_s": 10**9,
        }
    )


def make_bodies(count: int, size: int, start: int) -> list[bytes]:
    now_ms = int(time.time() * 1000)
    bodies = []
    serial = start
    for _ in range(count):
        events = []
        for _ in range(size):
            device = serial % 1000
            events.append(
                {
                    "event_id": f"bench-{serial}",
                    "sensor_id": f"dev-{device}",
                    "site_id": f"site-{device % 20}",
                    "ts": now_ms - random.randint(0, 3_600_000),
                    "power_w": round(random.uniform(0, 5000), 2),
                    "voltage_v": round(random.uniform(220, 240), 2),
                    "current_a": round(random.uniform(0, 20), 3),
                    "tags": [f"room:{device % 50}"],
                }
            )
            serial += 1
        bodies.append(orjson.dumps(events[0] if size == 1 else events))
    return bodies


async def drive(bodies: list[bytes], single: bool, concurrency: int) -> float:
    path = "/v1/events" if single else "/v1/events/batch"
    queue = list(reversed(bodies))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{PORT}", limits=limits, timeout=60
    ) as client:

        async def one() -> None:
            while queue:
                body = queue.pop()
                response = await client.post(
                    path, content=body, headers={"content-type": "application/json"}
                )
                if response.status_code != 202:
                    raise RuntimeError(f"{response.status_code}: {response.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(concurrency)))
        return time.perf_counter() - started


def start_api(settings: Settings) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        # Measures the API path; scripts.bench_durability measures what AOF costs.
        "ALLOW_VOLATILE_QUEUE": "true",
        "BACKLOG_MAX_ENTRIES": str(settings.backlog_max_entries),
        "BACKLOG_MAX_AGE_S": str(settings.backlog_max_age_s),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:app",
            "--port",
            str(PORT),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=ROOT,
    )


async def wait_ready() -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(f"http://127.0.0.1:{PORT}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("API did not start")


async def api_phase(settings: Settings, scale: float) -> list[tuple[int, int, float, float]]:
    plan = [(1, int(6000 * scale)), (100, int(600 * scale)), (1000, int(80 * scale))]
    rows = []
    api = start_api(settings)
    try:
        await wait_ready()
        serial = 0
        for size, requests in plan:
            bodies = make_bodies(requests, size, serial)
            serial += requests * size
            elapsed = await drive(bodies, size == 1, concurrency=16)
            rows.append((size, requests, requests / elapsed, requests * size / elapsed))
    finally:
        api.terminate()
        api.wait(10)
    return rows


async def reset_storage(settings: Settings, redis: Redis) -> None:
    conn = await asyncpg.connect(dsn(settings.database_url))
    await conn.execute("TRUNCATE events, readings, device_status")
    await conn.close()
    # Rewind the group so every worker run reads the same entries.
    await redis.xgroup_setid(settings.stream, settings.group, "0")


async def worker_run(settings: Settings, redis: Redis, writer: Writer) -> tuple[int, float]:
    worker_settings = settings.model_copy(update={"batch_entries": 50})
    database = Database(worker_settings)
    worker = Worker(worker_settings, redis, database, name="bench", burst=True, writer=writer)
    started = time.perf_counter()
    await worker.run()
    elapsed = time.perf_counter() - started
    await database.close()
    return worker.stored, elapsed


def two_processes(settings: Settings) -> float:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "ALLOW_VOLATILE_QUEUE": "true",
        "BATCH_ENTRIES": "50",
        "LOG_LEVEL": "WARNING",
        "TRIM_INTERVAL_S": "1000000000",
    }
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "workers", "--burst", "--name", f"p{i}"], env=env, cwd=ROOT
        )
        for i in range(2)
    ]
    for proc in procs:
        proc.wait()
    return time.perf_counter() - started


def migrate(settings: Settings) -> None:
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        env={**os.environ, "DATABASE_URL": settings.database_url},
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def main(settings: Settings, scale: float) -> str:
    redis = Redis.from_url(settings.redis_url)
    await redis.flushdb()
    lines = ["# Ingest benchmark", "", f"{os.cpu_count()} cores; client and server share them.", ""]
    lines += [
        "## API (POST → 202, dedupe + XADD)",
        "",
        "| batch | requests | requests/s | events/s |",
        "|---:|---:|---:|---:|",
    ]
    for size, requests, rps, eps in await api_phase(settings, scale):
        lines.append(f"| {size} | {requests} | {rps:,.0f} | {eps:,.0f} |")
    entries = await redis.xlen(settings.stream)
    lines += [
        "",
        f"## Workers ({entries} entries in the stream)",
        "",
        "| run | events stored | seconds | events/s |",
        "|---|---:|---:|---:|",
    ]
    rates: dict[str, float] = {}
    for label, writer in (
        ("1 worker, COPY staging", write_batch),
        ("1 worker, unnest arrays", write_batch_unnest),
    ):
        await reset_storage(settings, redis)
        stored, elapsed = await worker_run(settings, redis, writer)
        rates[label] = stored / elapsed
        lines.append(f"| {label} | {stored:,} | {elapsed:.2f} | {stored / elapsed:,.0f} |")
    await reset_storage(settings, redis)
    elapsed = await asyncio.to_thread(two_processes, settings)
    conn = await asyncpg.connect(dsn(settings.database_url))
    stored = await conn.fetchval("SELECT count(*) FROM events")
    await conn.close()
    lines.append(
        f"| 2 worker processes, COPY | {stored:,} | {elapsed:.2f} | {stored / elapsed:,.0f} |"
    )
    copy, unnest = rates["1 worker, COPY staging"], rates["1 worker, unnest arrays"]
    lines += [
        "",
        f"COPY / unnest: {copy / unnest:.2f}x; two processes / one: "
        f"{stored / elapsed / copy:.2f}x.",
        "",
    ]
    await redis.flushdb()
    await redis.aclose()
    return "\n".join(lines)


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_ingest", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the request counts")
    args = parser.parse_args()
    settings = bench_settings()
    migrate(settings)
    report = asyncio.run(main(settings, args.scale))
    out = ROOT / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_ingest.md").write_text(report)
    print(report)


if __name__ == "__main__":
    cli()
