"""`python -m scripts.bench_single`: single-event (and 10-event) ingest, step by step, side by
side with the seed-004 project when its code is at hand.

Each configuration runs on a fresh database and a private Redis (AOF everysec), with two
workers, under `wrk -t1 -cC -dS` (one load thread: the box has two cores to share) posting unique seed-004 events (scripts/wrk/events.lua).
Stored events/s counts what the workers stored, until the stream group is drained, over the
load plus the drain. The steps: the FastAPI route alone; + the lean ASGI path; + group commit;
+ API processes by core count; then the group window against latency.

With `--ratio` it measures instead the stored rate of batches (`--per-request`, default 100)
against a raw COPY of the very rows stored into empty copies of the same tables (plain
PostgreSQL, and TimescaleDB when `--timescale-url` is given), `--repeat` times, and prints
the median and the spread.

With `--seed004 DIR` (a checkout of YashRaj1506/TSQS, never committed here) and
`--seed004-python PY` (a Python with its requirements), the same load runs against it,
started as its README says but on a local database; its stored rows are counted the same way.
"""

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from redis.asyncio import Redis

from app.core.settings import dsn, get_settings
from app.core.streams import EventStream
from scripts.bench import BACKEND_NAMES, box_busy_seconds, cpu_seconds
from scripts.schema import recreate
from scripts.sql.bench import backends, copy_events, copy_readings
from scripts.stack import Child, Stack, free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
LUA = ROOT / "scripts" / "wrk" / "events.lua"


@dataclass
class Run:
    label: str
    per_request: int
    requests_s: float = 0.0
    stored_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def database_url(name: str) -> str:
    base = dsn(get_settings().database_url)
    return base.rsplit("/", 1)[0] + "/" + name


async def run_wrk(url: str, seconds: int, connections: int, per_request: int) -> dict[str, float]:
    process = await asyncio.create_subprocess_exec(
        "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s",
        "-s", str(LUA), url, "--", str(per_request),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await process.communicate()
    text = out.decode()
    values = dict(re.findall(r"(\w+)=([\d.]+)", text))
    if "requests" not in values:
        raise RuntimeError(f"wrk printed no summary:\n{text}")
    return {key: float(value) for key, value in values.items()}


async def count(url: str, table: str = "events") -> int:
    conn = await asyncpg.connect(dsn(url))
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


async def drained(redis: Redis, stream: EventStream, deadline_s: float = 600) -> float:
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        if (await stream.backlog()).entries == 0:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise RuntimeError("the workers did not drain the stream")


def _children(pid: int) -> list[int]:
    """The direct children of a process (uvicorn's workers under its supervisor)."""
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class CpuMeter:
    """CPU seconds per component over a run (API, workers, Redis, their PostgreSQL
    backends, the box), sampled twice a second from /proc so short-lived pids count too."""

    def __init__(self, stack: Stack, url: str) -> None:
        self.stack = stack
        self.url = url
        self.totals: dict[str, float] = {}
        self._last: dict[int, float] = {}
        self._box = box_busy_seconds()

    async def _pids(self, conn: asyncpg.Connection) -> dict[int, str]:
        pids = {}
        for child in self.stack.children:
            if child.running:
                name = child.name.split("-")[0]
                pids[child.pid] = "workers" if "worker" in child.name else name
                for sub in _children(child.pid):
                    pids[sub] = pids[child.pid]
        for pid, app in await backends(conn):
            pids[pid] = BACKEND_NAMES.get(app, "postgres (other)")
        return pids

    async def sample(self, conn: asyncpg.Connection) -> None:
        for pid, component in (await self._pids(conn)).items():
            seconds = cpu_seconds(pid)
            if seconds is None:
                continue
            delta = seconds - self._last.get(pid, seconds)
            self.totals[component] = self.totals.get(component, 0.0) + delta
            self._last[pid] = seconds
        self.totals["box"] = box_busy_seconds() - self._box

    async def run(self, stop: asyncio.Event) -> None:
        conn = await asyncpg.connect(dsn(self.url))
        try:
            while not stop.is_set():
                await self.sample(conn)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
            await self.sample(conn)
        finally:
            await conn.close()


async def ours(
    args: argparse.Namespace,
    label: str,
    per_request: int,
    processes: int,
    env: dict[str, str],
    url: str | None = None,
) -> Run:
    url = url or database_url("telemetry_bench_single")
    await asyncio.to_thread(recreate, url)
    workdir = RESULTS / "bench_single" / re.sub(r"\W+", "-", label).strip("-")
    shutil.rmtree(workdir, ignore_errors=True)
    async with Stack(workdir, {"DATABASE_URL": url, "LOG_LEVEL": "WARNING"}) as stack:
        redis_child = stack.redis_child()
        await stack.start_redis(redis_child)
        redis_url = f"redis://127.0.0.1:{redis_child.port}/0"
        stack.env["REDIS_URL"] = redis_url
        # The load is one tenant as fast as it goes: the per-tenant limit (20k ev/s per API
        # process by default) would measure the limiter and its 429s, not the pipeline.
        stack.env.update({"BACKLOG_MAX_ENTRIES": "10000000", "BACKLOG_MAX_AGE_S": "3600",
                          "TENANT_RATE_EPS": "1e9", "TENANT_BURST": "1e9"})  # fmt: skip
        api = stack.api_child(env=env, processes=processes)
        await stack.start_http(api)
        for index in range(2):
            stack.worker_child(f"bench-worker-{index}").start()
        meter, stop = CpuMeter(stack, url), asyncio.Event()
        metering = asyncio.create_task(meter.run(stop))
        result = await run_wrk(f"http://127.0.0.1:{api.port}", args.seconds, args.connections,
                               per_request)  # fmt: skip
        redis = Redis.from_url(redis_url)
        try:
            drain = await drained(redis, EventStream(redis, "telemetry:events", "ingest"))
        finally:
            await redis.aclose()
            stop.set()
            await metering
        stored = await count(url)
    run = summarize(label, per_request, result, stored, args.seconds + drain, drain)
    # CPU microseconds per stored event, per component: where the time goes.
    run.extra["cpu_us_per_event"] = {
        name: round(1e6 * seconds / max(stored, 1), 1) for name, seconds in meter.totals.items()
    }
    return run


def summarize(
    label: str, per_request: int, result: dict[str, float], stored: int, span_s: float,
    drain_s: float,
) -> Run:  # fmt: skip
    seconds = result["duration_us"] / 1e6
    return Run(
        label,
        per_request,
        requests_s=result["requests"] / seconds,
        stored_s=stored / span_s,
        p50_ms=result["p50_ms"],
        p99_ms=result["p99_ms"],
        errors=int(result["errors"] + result["non2xx"]),
        extra={"stored": stored, "drain_s": round(drain_s, 1)},
    )


async def seed004(args: argparse.Namespace, per_request: int) -> Run:
    """The seed-004 project from its own checkout: uvicorn app.main:app, as its Dockerfile
    runs it, against a local database of its own; it writes in the request, so nothing drains."""
    url = database_url("bench_seed004")
    await asyncio.to_thread(recreate_empty, url)
    port = free_port()
    env = {**os.environ, "DATABASE_URL": "postgresql+asyncpg://" + url.split("://", 1)[1]}
    log = (RESULTS / "bench_single" / "seed004.log").open("ab")
    process = subprocess.Popen(  # noqa: ASYNC220 - a server started, not waited on
        [args.seed004_python, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        cwd=args.seed004, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    child = Child("seed004", [], {}, Path(log.name), popen=process, port=port)
    try:
        await wait_http_any(child)
        result = await run_wrk(f"http://127.0.0.1:{port}", args.seconds, args.connections,
                               per_request)  # fmt: skip
        stored = await count(url)
    finally:
        await child.stop()
        log.close()
    return summarize(f"seed-004 project ({per_request}/request)", per_request, result, stored,
                     args.seconds, 0.0)  # fmt: skip


def recreate_empty(url: str) -> None:
    import psycopg
    from psycopg import sql

    admin = url.rsplit("/", 1)[0] + "/postgres"
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


async def wait_http_any(child: Child, seconds: float = 60) -> None:
    """The seed-004 project has no /healthz: any answer on /docs means it is up."""
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if not child.running:
                raise RuntimeError(f"seed-004 exited; see {child.log}")
            try:
                await client.get(f"http://127.0.0.1:{child.port}/docs")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.2)
    raise RuntimeError("seed-004 did not answer")


async def raw_copy_rate(stored_url: str, empty_url: str) -> float:
    """Events/s of a raw COPY of the rows the run stored into empty copies of the same
    tables (a database migrated the same way: same indexes, hypertables on TimescaleDB)."""
    await asyncio.to_thread(recreate, empty_url)
    source = await asyncpg.connect(dsn(stored_url))
    target = await asyncpg.connect(dsn(empty_url))
    try:
        events = await source.fetch(
            "SELECT tenant_id, device_id, ts, event_id, site_id, metrics::text, tags, seq"
            " FROM events ORDER BY tenant_id, device_id, ts"
        )
        readings = await source.fetch(
            "SELECT tenant_id, device_id, metric, ts, site_id, value, seq FROM readings"
            " ORDER BY tenant_id, device_id, metric, ts"
        )
        event_rows = [tuple(r) for r in events]
        reading_rows = [tuple(r) for r in readings]
        started = time.perf_counter()
        await copy_events(target, event_rows)
        await copy_readings(target, reading_rows)
        elapsed = time.perf_counter() - started
    finally:
        await source.close()
        await target.close()
    return len(event_rows) / elapsed


async def ratio(args: argparse.Namespace) -> list[dict[str, float]]:
    """Stored rate over the raw COPY of the same rows, repeated: batches of
    `--per-request` events, everything on (lean path, group commit, COPY fast path)."""
    out = []
    for database in ["plain"] + (["timescale"] if args.timescale_url else []):
        base = args.timescale_url.rsplit("/", 1)[0] if database == "timescale" else None
        url = f"{base}/telemetry_bench_single" if base else database_url("telemetry_bench_single")
        empty = f"{base}/telemetry_bench_raw" if base else database_url("telemetry_bench_raw")
        for repeat in range(args.repeat):
            run = await ours(args, f"{database} ratio {repeat}", args.per_request, 1, {}, url)
            raw = await raw_copy_rate(url, empty)
            row = {"database": database, "stored_s": run.stored_s, "raw_copy_s": raw,
                   "ratio": run.stored_s / raw, "drain_s": run.extra["drain_s"], "errors": run.errors,
                   "raw_copy_us_per_event": 1e6 / raw,
                   "cpu_us_per_event": run.extra["cpu_us_per_event"]}  # fmt: skip
            print(json.dumps(row), flush=True)
            out.append(row)
        ratios = sorted(r["ratio"] for r in out if r["database"] == database)
        print(f"{database}: stored / raw COPY median {statistics.median(ratios):.2f} "
              f"(spread {ratios[0]:.2f}-{ratios[-1]:.2f})", flush=True)  # fmt: skip
    return out


async def main(args: argparse.Namespace) -> list[Run]:
    cores = os.cpu_count() or 1
    lean_off = {"LEAN_INGEST": "false", "GROUP_MAX_EVENTS": "1"}
    steps: list[tuple[str, int, int, dict[str, str]]] = [
        ("before: FastAPI route, 1 process", 1, 1, lean_off),
        ("+ lean path", 1, 1, {"GROUP_MAX_EVENTS": "1"}),
        ("+ group commit (one loop turn)", 1, 1, {"GROUP_WINDOW_MS": "0"}),
        (f"+ {cores} API processes", 1, cores, {"GROUP_WINDOW_MS": "0"}),
    ]
    for window in args.windows:
        steps.append((f"{cores} processes, window {window} ms", 1, cores,
                      {"GROUP_WINDOW_MS": str(window)}))  # fmt: skip
    steps += [
        ("before: FastAPI route, 1 process", 10, 1, lean_off),
        (f"all steps, {cores} processes", 10, cores, {"GROUP_WINDOW_MS": "0"}),
    ]
    runs: list[Run] = []
    if args.seed004:
        for per_request in (1, 10):
            runs.append(await seed004(args, per_request))
            report(runs[-1])
    for label, per_request, processes, env in steps:
        runs.append(await ours(args, f"{label} ({per_request}/request)", per_request,
                               processes, env))  # fmt: skip
        report(runs[-1])
    return runs


def report(run: Run) -> None:
    print(
        f"{run.label:<48} {run.requests_s:>8,.0f} req/s {run.stored_s:>8,.0f} stored ev/s "
        f"p50 {run.p50_ms:6.1f} ms p99 {run.p99_ms:6.1f} ms errors {run.errors} {run.extra}",
        flush=True,
    )


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_single", description=__doc__)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--windows", type=float, nargs="*", default=[0.5, 1.0, 2.0])
    parser.add_argument("--seed004", default=os.environ.get("SEED004_DIR"))
    parser.add_argument(
        "--seed004-python", default=os.environ.get("SEED004_PYTHON", sys.executable)
    )
    parser.add_argument("--ratio", action="store_true", help="stored rate / raw COPY instead")
    parser.add_argument("--per-request", type=int, default=100, help="events per request")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--timescale-url", default=os.environ.get("TEST_TIMESCALE_URL"))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench_single needs wrk (Debian: apt-get install wrk)")
    (RESULTS / "bench_single").mkdir(parents=True, exist_ok=True)
    if args.ratio:
        rows = asyncio.run(ratio(args))
        (RESULTS / "bench_ratio.json").write_text(json.dumps(rows, indent=1))
        print(f"bench_single: figures in {RESULTS / 'bench_ratio.json'}", file=sys.stderr)
        return
    runs = asyncio.run(main(args))
    out = RESULTS / "bench_single.json"
    out.write_text(json.dumps([run.__dict__ for run in runs], indent=1))
    print(f"bench_single: figures in {out}", file=sys.stderr)


if __name__ == "__main__":
    cli()
