"""Read benchmark: 1,000 devices x 3 metrics x 30 days of 1-minute data (~130M readings) at
--scale 1; the rollups built by the refresher; then p50/p99 of three reads, cold and cached.

    python -m scripts.bench_reads [--scale 0.1] [--days 30] [--samples 100] [--reuse]

The data is generated inside PostgreSQL with generate_series, into its own database
(telemetry_bench_reads by default; never a test database), ending at the current minute.
Reads go through the API in process (httpx ASGI transport: routing, cache, SQL, JSON; no
socket). *Cold* is an app-cache miss on a key never asked before (the database's own
buffers may hold the pages); *cached* repeats one query (an app-cache hit for the
aggregates; warm database buffers for the events, which the app does not cache).
Prints a Markdown report and writes it to results/bench_reads_<database>.md.
"""

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from app.core.settings import Settings, dsn, get_settings
from app.main import create_app
from scripts.schema import recreate
from workers.refresher import Refresher

ROOT = Path(__file__).resolve().parent.parent
DEVICES_AT_SCALE_1 = 1000
DEVICES_PER_SITE = 10

# One day of every device per statement; the events and their three readings together.
GENERATE = f"""
WITH g AS (
    SELECT 'dev-' || lpad(d::text, 4, '0') AS device_id,
           'site-' || lpad((d / {DEVICES_PER_SITE})::text, 3, '0') AS site_id,
           d, ts, extract(epoch FROM ts)::bigint AS e
    FROM generate_series(1, $1::int) AS d,
         generate_series($2::timestamptz, $3::timestamptz - interval '1 minute',
                         interval '1 minute') AS ts
), v AS (
    SELECT *,
        round((400 + 300 * sin(e / 3600.0 + d) + (e / 60 * 7919 + d * 104729) % 97)::numeric, 2)
            AS power_w,
        round((230 + ((e / 60 + d) % 11) - 5)::numeric, 2) AS voltage_v
    FROM g
), ev AS (
    INSERT INTO events (tenant_id, device_id, ts, event_id, site_id, metrics, tags, seq)
    SELECT 'default', device_id, ts, device_id || '-' || e, site_id,
        jsonb_build_object('power_w', power_w, 'voltage_v', voltage_v,
                           'current_a', round(power_w / voltage_v, 3)),
        ARRAY['site:' || site_id, 'room:' || (d % 50)], 1
    FROM v
)
INSERT INTO readings (tenant_id, device_id, metric, ts, site_id, value, seq)
SELECT 'default', device_id, m.metric, ts, site_id, m.value, 1
FROM v, LATERAL (VALUES ('power_w', power_w::float8), ('voltage_v', voltage_v::float8),
                        ('current_a', round(power_w / voltage_v, 3)::float8)) AS m(metric, value)
"""


def bench_settings(database: str, redis_url: str | None) -> Settings:
    """The bench database: a name on DATABASE_URL's server, or a whole URL."""
    base = get_settings()
    if "://" in database:
        url = make_url(dsn(database))
    else:
        url = make_url(dsn(base.database_url)).set(database=database)
    if not url.database or "test" in url.database:
        raise SystemExit(f"refusing to use {url.database!r}: never a test database")
    return base.model_copy(
        update={
            "database_url": url.render_as_string(hide_password=False),
            "redis_url": redis_url or base.redis_url,
            "refresh_max_minutes": 1440,
        }
    )


async def generate(settings: Settings, devices: int, days: int, end: datetime) -> float:
    """Load the data with the tables' indexes dropped, then build them again (bulk load)."""
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        await conn.execute("SET synchronous_commit = off; SET maintenance_work_mem = '512MB'")
        plain = not await conn.fetchval(
            "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'timescaledb')"
        )
        indexes = []
        if plain:
            indexes = await conn.fetch(
                "SELECT indexname, indexdef FROM pg_indexes"
                " WHERE tablename IN ('events', 'readings') AND indexname NOT LIKE '%pkey'"
            )
            for index in indexes:
                await conn.execute(f"DROP INDEX {index['indexname']}")
            for table in ("events", "readings"):
                await conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey")
        start = end - timedelta(days=days)
        for day in range(days):
            lo = start + timedelta(days=day)
            await conn.execute(GENERATE, devices, lo, lo + timedelta(days=1))
            print(f"  day {day + 1}/{days} loaded ({time.perf_counter() - started:.0f} s)")
        if plain:
            await conn.execute(
                "ALTER TABLE events ADD PRIMARY KEY (tenant_id, device_id, ts);"
                "ALTER TABLE readings ADD PRIMARY KEY (tenant_id, device_id, metric, ts)"
            )
            for index in indexes:
                await conn.execute(index["indexdef"])
        # What the workers would have recorded: every minute changed.
        await conn.execute(
            "INSERT INTO rollup_dirty (minute) SELECT generate_series($1::timestamptz,"
            " $2::timestamptz - interval '1 minute', interval '1 minute')",
            start,
            end,
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def build_rollups(settings: Settings) -> tuple[float, int]:
    started = time.perf_counter()
    refresher = Refresher(settings)
    rounds = 0
    try:
        while True:
            result = await refresher.round()
            rounds += 1
            if not result.led:
                raise SystemExit("another refresher holds the lock on this database")
            if result.minutes == 0:
                break
    finally:
        await refresher.close()
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return time.perf_counter() - started, rounds


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return p50 * 1000, p99 * 1000


async def timed(client: httpx.AsyncClient, url: str) -> float:
    started = time.perf_counter()
    response = await client.get(url)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"{url}: {response.status_code} {response.text[:300]}")
    return elapsed


async def measure(
    settings: Settings, devices: int, days: int, end: datetime, samples: int
) -> list[tuple[str, str, float, float, float, float]]:
    end_ms = int(end.timestamp() * 1000)
    start_ms = end_ms - days * 86_400_000
    sites = max(1, (devices + DEVICES_PER_SITE - 1) // DEVICES_PER_SITE)

    def device(i: int) -> str:
        return f"dev-{i % devices + 1:04d}"

    def hourly(i: int) -> str:
        return (
            f"/v1/metrics/aggregate?metric=power_w&device_id={device(i)}"
            f"&from_time={start_ms}&to_time={end_ms}&interval=1h"
        )

    def site_minutes(i: int) -> str:
        day = min(days - 1, 1 + i // sites)
        lo = start_ms + day * 86_400_000
        return (
            f"/v1/metrics/aggregate?metric=power_w&site_id=site-{i % sites:03d}"
            f"&from_time={lo}&to_time={lo + 86_400_000}&interval=1m"
        )

    def site_energy(i: int) -> str:
        day = min(days - 1, 1 + i // sites)
        lo = start_ms + day * 86_400_000
        return f"/sites/site-{i % sites:03d}/agg?window=1m&from={lo}&to={lo + 86_400_000}"

    def recent(i: int) -> str:
        return f"/sensors/{device(i)}/recent?limit=100"

    queries: list[tuple[str, str, Callable[[int], str]]] = [
        ("30-day hourly aggregate, one device", "720 buckets", hourly),
        ("1-day minute aggregate, one site", "1440 buckets", site_minutes),
        ("1-day site energy (window=1m), one site", "1440 windows", site_energy),
        ("recent 100 events, one device", "100 events", recent),
    ]
    app = create_app(settings)
    rows = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            await timed(client, recent(devices + 7))  # connections and caches of the app
            for name, size, url in queries:
                distinct = devices if url in (hourly, recent) else sites * (days - 1)
                cold = [await timed(client, url(i)) for i in range(min(samples, distinct))]
                await timed(client, url(0))
                cached = [await timed(client, url(0)) for _ in range(samples)]
                rows.append((name, size, *percentiles(cold), *percentiles(cached)))
    return rows


async def plan_of_hourly(settings: Settings, days: int, end: datetime) -> str:
    """Which relations the 30-day hourly query reads, with its buffer count."""
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        lines = await conn.fetch(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT * FROM readings_1h"
            " WHERE tenant_id = 'default' AND device_id = 'dev-0001' AND metric = 'power_w'"
            " AND hour >= $1 AND hour < $2",
            end - timedelta(days=days),
            end,
        )
    finally:
        await conn.close()
    text = [r[0] for r in lines]
    scans = sorted(
        {
            line.split(" on ")[1].split()[0]
            for line in text
            if "Scan" in line and " on " in line and "Subquery" not in line
        }
    )
    buffers = next((line.strip() for line in text if "Buffers" in line), "")
    return f"scans {', '.join(scans)}; {buffers}"


async def main(args: argparse.Namespace) -> None:
    settings = bench_settings(args.database, args.redis_url)
    devices = max(1, round(DEVICES_AT_SCALE_1 * args.scale))
    now = datetime.now(UTC)
    end = now.replace(second=0, microsecond=0)
    readings = devices * 3 * args.days * 1440
    print(f"{devices} devices x 3 metrics x {args.days} days: {readings:,} readings")
    load_s = build_s = 0.0
    rounds = 0
    if not args.reuse:
        recreate(settings.database_url)
        load_s = await generate(settings, devices, args.days, end)
        build_s, rounds = await build_rollups(settings)
    else:
        conn = await asyncpg.connect(dsn(settings.database_url))
        try:
            last = await conn.fetchval("SELECT max(ts) FROM events")
        finally:
            await conn.close()
        end = last.replace(second=0, microsecond=0) + timedelta(minutes=1)
    rows = await measure(settings, devices, args.days, end, args.samples)
    plan = await plan_of_hourly(settings, args.days, end)
    report = [
        f"# Read benchmark ({datetime.now(UTC):%Y-%m-%d})",
        "",
        f"- scale {args.scale}: {devices} devices x 3 metrics x {args.days} days of 1-minute"
        f" data = {readings:,} readings, {readings // 3:,} events",
        f"- database {make_url(dsn(settings.database_url)).database}; "
        + (
            "data and rollups of an earlier run"
            if args.reuse
            else f"load {load_s:.0f} s, rollups {build_s:.0f} s in {rounds} refresher rounds"
        ),
        f"- 30-day hourly query plan: {plan}",
        f"- {args.samples} samples per cell (cold: distinct keys, as many as exist)",
        "",
        "| read | size | cold p50 ms | cold p99 ms | cached p50 ms | cached p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for name, size, c50, c99, h50, h99 in rows:
        report.append(f"| {name} | {size} | {c50:.1f} | {c99:.1f} | {h50:.2f} | {h99:.2f} |")
    text = "\n".join(report)
    print(text)
    out = ROOT / "results" / f"bench_reads_{make_url(dsn(settings.database_url)).database}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text + "\n")


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_reads", description=__doc__)
    parser.add_argument("--scale", type=float, default=0.1, help="1.0 is 1,000 devices")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument(
        "--database", default="telemetry_bench_reads", help="a database name or a whole URL"
    )
    parser.add_argument("--redis-url", default=None, help="default: REDIS_URL")
    parser.add_argument("--reuse", action="store_true", help="skip generation, measure only")
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
