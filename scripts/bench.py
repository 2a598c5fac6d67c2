"""`python -m scripts.bench`: the whole stack co-located on this box, measured end to end.

One run, in this order, with the generator (`scripts.generate`, its own process) steered
through GET/PUT /v1/generator/config:

1. sustained: the rate steps up (1k, 2k, 3k, ... events/s) until the stream backlog grows
   without bound (or the API cannot take the offered rate); the last step that held is C;
2. API capacity: the generator as fast as it can (batches of 500), then single-event
   requests: what the API can absorb when the workers fall behind;
3. bursts at the chosen N = min(0.4 C, capacity / 10): seed 000's 10x for 10 s, with the
   202 latency during the burst and the time the workers need to drain it;
4. all along: ingest-to-queryable latency (probe events polled in the table the read API
   reads) and CPU per component (from /proc/<pid>/stat, PostgreSQL backends included);
5. the checker over everything the generator sent (0 lost, 0 doubled);
6. the raw COPY rate of the same rows into the same tables, and the naive baseline
   (`scripts.baseline`, one INSERT + COMMIT per event) driven by the same generator.

Writes results/bench.md, results/bench.png and results/bench.json (results/ is not in git).
Uses its own database (telemetry_bench_e2e, dropped and recreated) and a private Redis.
"""

import argparse
import asyncio
import contextlib
import gzip
import itertools
import math
import os
import platform
import re
import shutil
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.settings import Settings, async_url, dsn, get_settings
from app.core.timeparse import parse_ts
from scripts.generate import percentile
from scripts.schema import recreate
from scripts.sql.baseline import count_events as baseline_count
from scripts.sql.bench import (
    backends,
    copy_events,
    copy_readings,
    probes_seen,
    truncate_storage,
)
from scripts.stack import Child, Stack, free_port
from scripts.verify import backlog_entries, verify

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
TICK = os.sysconf("SC_CLK_TCK")
PROBE_TENANT = "default"
BIG = 1_000_000.0
BOX = "box (all processes)"
# It is stopped with SIGTERM and then drains what it produced: the benchmark waits for that.
GENERATE = [sys.executable, "-m", "scripts.generate", "--quiet", "--burst-seconds", "0",
            "--grace", "180", "--stop-grace", "180"]  # fmt: skip


# PostgreSQL backends by application_name, each counted as its client's share.
BACKEND_NAMES = {
    "telemetry-api": "postgres (api)",
    "telemetry-worker": "postgres (workers)",
    "baseline": "postgres (baseline)",
    "bench-copy": "postgres (COPY)",
}


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, from /proc (psutil is not a dependency)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def box_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores, every process), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / TICK


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (0 with fewer than two points)."""
    if len(points) < 2:
        return 0.0
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


@dataclass
class Sample:
    t: float
    backlog: int
    stored: float
    cpu: dict[str, float]


@dataclass
class Phase:
    name: str
    t0: float
    t1: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


class Meter:
    """Samples once a second: backlog, events stored, CPU seconds per component."""

    def __init__(
        self,
        stack: Stack,
        redis: Redis,
        settings: Settings,
        conn: asyncpg.Connection,
        http: httpx.AsyncClient,
    ) -> None:
        self.stack = stack
        self.redis = redis
        self.stream_name = settings.stream
        self.group = settings.group
        self.conn = conn
        self.http = http
        self.samples: list[Sample] = []
        self.workers: list[Child] = []
        self.extra: dict[int, str] = {}
        self._last: dict[int, float] = {}
        self._cpu: dict[str, float] = defaultdict(float)
        self._stored: dict[str, float] = {}

    def _component(self, child: Child) -> str:
        for prefix in ("api", "redis", "baseline", "generator"):
            if child.name.startswith(prefix):
                return prefix
        return "workers" if child in self.workers else child.name

    async def _pids(self) -> dict[int, str]:
        pids = {c.pid: self._component(c) for c in self.stack.children if c.running}
        pids[os.getpid()] = "bench (probe, sampler)"
        pids |= self.extra
        for pid, app in await backends(self.conn):
            pids[pid] = BACKEND_NAMES.get(app, "postgres (bench)")
        return pids

    async def _scrape_stored(self) -> float:
        for worker in self.workers:
            if not worker.running:
                continue
            with contextlib.suppress(httpx.HTTPError):
                text = (await self.http.get(f"http://127.0.0.1:{worker.port}/metrics")).text
                for line in text.splitlines():
                    if line.startswith("telemetry_worker_events_stored_total "):
                        self._stored[worker.name] = float(line.split()[1])
        return sum(self._stored.values())

    async def sample(self) -> None:
        for pid, component in (await self._pids()).items():
            seconds = cpu_seconds(pid)
            if seconds is None:
                continue
            self._cpu[component] += seconds - self._last.get(pid, seconds)
            self._last[pid] = seconds
        self._cpu[BOX] = box_busy_seconds()
        try:
            backlog = await backlog_entries(self.redis, self.stream_name, self.group)
        except (RedisError, OSError):
            backlog = -1
        stored = await self._scrape_stored()
        self.samples.append(Sample(time.time(), backlog, stored, dict(self._cpu)))

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.sample()
            except Exception as error:  # one bad sample must not end the measurement
                print(f"bench: sample failed: {error!r}", file=sys.stderr, flush=True)
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))

    def at(self, t: float) -> Sample:
        return min(self.samples, key=lambda s: abs(s.t - t))

    def backlog_now(self) -> int:
        return self.samples[-1].backlog if self.samples else 0


class Prober:
    """Ingest-to-queryable: a probe event every 250 ms, polled in `events` every 20 ms."""

    def __init__(self, http: httpx.AsyncClient, conn: asyncpg.Connection, run: str) -> None:
        self.http = http
        self.conn = conn
        self.device = f"{run}-probe"
        self.sent: dict[int, float] = {}
        self.seen: list[tuple[float, float]] = []  # (sent at, latency s)
        self.failed = 0

    async def send(self) -> None:
        while True:
            ts = int(time.time() * 1000)
            body = {"event_id": f"{self.device}-{ts}", "device_id": self.device, "ts": ts}
            body["metrics"] = {"probe": 1.0}
            sent = time.time()
            with contextlib.suppress(httpx.HTTPError):
                response = await self.http.post("/v1/events", json=body)
                if response.status_code == 202:
                    self.sent[ts] = sent
                else:
                    self.failed += 1
            await asyncio.sleep(0.25)

    async def poll(self) -> None:
        newest = 0
        while True:
            for ts in await probes_seen(self.conn, PROBE_TENANT, self.device, newest):
                sent = self.sent.pop(ts, None)
                newest = max(newest, ts)
                if sent is not None:
                    self.seen.append((sent, time.time() - sent))
            await asyncio.sleep(0.02)

    def latencies(self, t0: float, t1: float) -> list[float]:
        return [latency for sent, latency in self.seen if t0 <= sent < t1]


class GenStats:
    """The generator's one-line-per-second counters, read as they are written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self._offset = 0

    def refresh(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as file:
            file.seek(self._offset)
            data = file.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        self.rows += [orjson.loads(line) for line in complete.splitlines() if line.strip()]

    def window(self, t0: float, t1: float) -> list[dict[str, Any]]:
        self.refresh()
        return [row for row in self.rows if t0 <= row["t"] <= t1]

    def rate(self, t0: float, t1: float, key: str = "accepted") -> float:
        rows = self.window(t0, t1)
        if len(rows) < 2:
            return 0.0
        return float((rows[-1][key] - rows[0][key]) / (rows[-1]["t"] - rows[0]["t"]))

    def latency(self, t0: float, t1: float) -> tuple[float, float]:
        rows = [r for r in self.window(t0, t1) if r["latency_n"]]
        if not rows:
            return math.nan, math.nan
        # Per-second percentiles, weighted by requests: median of p50s, max-ish of p99s.
        p50 = statistics.median(r["latency_p50"] for r in rows)
        p99 = percentile([r["latency_p99"] for r in rows], 0.9)
        return p50 * 1000, p99 * 1000


WRK_SCRIPT = """
-- Single-event POSTs with unique ids and timestamps, as the generator's would be.
local counter = 0
local tag = os.getenv("WRK_TAG") or "wrk"
local base = os.time() * 1000
request = function()
  counter = counter + 1
  local body = string.format(
    '{"event_id":"%s-%d","device_id":"%s-%d","ts":%d,"metrics":{"x":1.5}}',
    tag, counter, tag, counter % 100, base + counter)
  return wrk.format("POST", "/v1/events", {["Content-Type"] = "application/json"}, body)
end
"""


def _wrk_ms(text: str, label: str) -> float:
    match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if match is None:
        return math.nan
    return float(match[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match[2]]


async def wrk(
    url: str, seconds: float, tag: str, meter: "Meter | None" = None
) -> dict[str, float] | None:
    """wrk -t1 -c16 of single-event POSTs; None when wrk is not installed."""
    binary = shutil.which("wrk")
    if binary is None:
        return None
    script = RESULTS / "bench-wrk.lua"
    script.write_text(WRK_SCRIPT)
    process = await asyncio.create_subprocess_exec(
        *(binary, "-t1", "-c16", f"-d{max(1, round(seconds))}s", "--latency"),
        *("-s", str(script), url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "WRK_TAG": tag},
    )
    if meter is not None:
        meter.extra[process.pid] = "wrk"
    out, _ = await asyncio.wait_for(process.communicate(), timeout=seconds + 60)
    text = out.decode()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    refused = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    return {
        "rps": float(rps[1]) if rps else math.nan,
        "p50": _wrk_ms(text, "50%"),
        "p99": _wrk_ms(text, "99%"),
        "non_2xx": float(refused[1]) if refused else 0.0,
    }


class Bench:
    http: httpx.AsyncClient
    api_url: str
    meter: Meter
    prober: Prober
    probing: list[asyncio.Task[None]]

    def __init__(self, args: argparse.Namespace, stack: Stack, database_url: str) -> None:
        self.args = args
        self.stack = stack
        self.database_url = database_url
        self.phases: list[Phase] = []
        self.started = time.time()
        self.run_id = f"bench{int(self.started) % 100000}"
        self.stats = GenStats(RESULTS / "bench-stats.jsonl")
        self.figures: dict[str, Any] = {}
        self.knobs: dict[str, Any] = {
            "rate": 500.0,
            "burst_seconds": 0.0,
            "batch_size": 500,
            "paused": False,
        }

    # Steering -------------------------------------------------------------------------

    async def steer(self, **changes: Any) -> None:
        self.knobs |= changes
        response = await self.http.put("/v1/generator/config", json=self.knobs)
        response.raise_for_status()

    async def hold(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def phase(self, name: str) -> Phase:
        phase = Phase(name, time.time())
        self.phases.append(phase)
        return phase

    async def drain(self, limit_s: float = 180.0) -> float:
        """Pause the generator and wait until the backlog is gone; returns the seconds."""
        started = time.monotonic()
        await self.steer(paused=True)
        for _ in range(int(limit_s / 0.5)):
            await asyncio.sleep(0.5)
            if self.meter.backlog_now() == 0 and self._generator_idle():
                break
        await self.steer(paused=False)
        return time.monotonic() - started

    def _generator_idle(self) -> bool:
        rows = self.stats.window(time.time() - 3, time.time())
        return bool(rows) and rows[-1]["queued_batches"] == 0

    # Phases ---------------------------------------------------------------------------

    async def sustained(self) -> float:
        held = 0.0
        step_s = self.args.step_seconds
        for rate in self.args.rates:
            phase = self.phase(f"{rate / 1000:g}k/s")
            await self.steer(rate=float(rate))
            await self.hold(step_s)
            phase.t1 = time.time()
            t0 = phase.t0 + step_s / 3
            accepted = self.stats.rate(t0, phase.t1)
            before, after = self.meter.at(t0), self.meter.at(phase.t1)
            seconds = max(1e-9, after.t - before.t)
            stored = (after.stored - before.stored) / seconds
            requests = self.stats.rate(t0, phase.t1, "requests") * seconds
            # The backlog's trend over the window, not two noisy end points.
            points = [(x.t, float(x.backlog)) for x in self.meter.samples if t0 <= x.t <= phase.t1]
            growth = round(slope(points) * seconds, 1)
            p50, p99 = self.stats.latency(t0, phase.t1)
            holds = accepted >= 0.9 * rate and growth <= max(4.0, 0.03 * requests)
            phase.info = {
                "target": rate,
                "accepted": accepted,
                "stored": stored,
                "growth": growth,
                "backlog": after.backlog,
                "p50": p50,
                "p99": p99,
                "holds": holds,
            }
            print(f"bench: {phase.name}: {phase.info}", file=sys.stderr, flush=True)
            if not holds:
                break
            held = float(rate)
        self.phase("drain").info["seconds"] = await self.drain()
        self.phases[-1].t1 = time.time()
        return held

    async def capacity(self) -> tuple[float, float]:
        """Batches of 500 from the generator as fast as it goes, then single-event requests
        from wrk (the Python client spends ~2 ms CPU a request: it would measure itself)."""
        phase = self.phase("max, batch 500")
        await self.steer(rate=BIG)
        await self.hold(self.args.capacity_seconds)
        phase.t1 = time.time()
        t0 = phase.t0 + min(3.0, self.args.capacity_seconds / 3)
        accepted = self.stats.rate(t0, phase.t1)
        p50, p99 = self.stats.latency(t0, phase.t1)
        phase.info = {"accepted": accepted, "p50": p50, "p99": p99}
        print(f"bench: {phase.name}: {phase.info}", file=sys.stderr, flush=True)
        drain = self.phase("drain")
        drain.info["seconds"] = await self.drain()
        drain.t1 = time.time()
        single = self.phase("single events (wrk)")
        await self.steer(paused=True)
        result = await wrk(
            self.api_url, self.args.capacity_seconds, f"{self.run_id}-wrk", self.meter
        )
        single.t1 = time.time()
        single.info = result or {}
        print(f"bench: {single.name}: {single.info}", file=sys.stderr, flush=True)
        drain = self.phase("drain")
        drain.info["seconds"] = await self.drain()
        drain.t1 = time.time()
        return accepted, (result or {}).get("rps", math.nan)

    async def bursts(self, rate: float) -> None:
        steady = self.phase(f"steady {rate:g}/s")
        await self.steer(rate=rate)
        await self.hold(20)
        steady.t1 = time.time()
        burst = self.phase(f"burst {10 * rate:g}/s")
        peak_before = max(
            (s.backlog for s in self.meter.samples if s.t >= steady.t0 + 5), default=0
        )
        await self.steer(rate=10 * rate)
        await self.hold(10)
        burst.t1 = time.time()
        after = self.phase(f"after burst {rate:g}/s")
        await self.steer(rate=rate)
        drained_at = None
        for _ in range(int(self.args.drain_limit / 0.5)):
            await asyncio.sleep(0.5)
            if self.meter.backlog_now() <= peak_before + 2 and self._generator_idle():
                drained_at = time.time()
                break
        rest = steady.t0 + 60 - time.time()
        if rest > 0:
            await self.hold(rest)
        after.t1 = time.time()
        peak = max(
            (s.backlog for s in self.meter.samples if burst.t0 <= s.t <= after.t1), default=0
        )
        for phase in (steady, burst, after):
            t0 = phase.t0 + (5 if phase is steady else 0)
            p50, p99 = self.stats.latency(t0, phase.t1)
            probes = self.prober.latencies(t0, phase.t1)
            phase.info |= {
                "offered": self.stats.rate(t0, phase.t1, "sent"),
                "accepted": self.stats.rate(t0, phase.t1),
                "p50": p50,
                "p99": p99,
                "probe_p50": percentile(probes, 0.5) * 1000,
                "probe_p99": percentile(probes, 0.99) * 1000,
                "probes": len(probes),
            }
        burst.info["backlog_peak"] = peak
        burst.info["drain_s"] = None if drained_at is None else drained_at - burst.t1
        print(f"bench: burst: {burst.info}", file=sys.stderr, flush=True)

    # Run ------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        args, stack = self.args, self.stack
        redis_child = stack.redis_child()
        await stack.start_redis(redis_child)
        redis_url = f"redis://127.0.0.1:{redis_child.port}/0"
        stack.env["REDIS_URL"] = redis_url
        api = stack.api_child()
        await stack.start_http(api)
        workers = [
            stack.worker_child(f"bench-w{i}", metrics_port=free_port()) for i in range(args.workers)
        ]
        for worker in workers:
            worker.start()
        api_url = self.api_url = f"http://127.0.0.1:{api.port}"
        truth = RESULTS / "bench-truth.ndjson.gz"
        generator = stack.child(
            "generator",
            [
                *GENERATE,
                "--url",
                api_url,
                "--rate",
                "500",
                "--duration",
                "86400",
                "--devices",
                str(args.devices),
                "--concurrency",
                "8",
                "--ground-truth",
                str(truth),
                "--stats",
                str(self.stats.path),
                "--run-id",
                self.run_id,
            ],
        )
        settings = get_settings().model_copy(update={"redis_url": redis_url})
        redis = Redis.from_url(redis_url)
        conns = [
            await asyncpg.connect(dsn(self.database_url), server_settings={"application_name": app})
            for app in ("bench", "bench", "bench-copy")
        ]
        meter_conn, probe_conn, copy_conn = conns
        async with (
            httpx.AsyncClient(timeout=5) as scrape,
            httpx.AsyncClient(base_url=api_url, timeout=30) as http,
        ):
            self.http = http
            self.meter = Meter(stack, redis, settings, meter_conn, scrape)
            self.meter.workers = workers
            self.prober = Prober(http, probe_conn, self.run_id)
            metering = asyncio.create_task(self.meter.run())
            probing = self.probing = [
                asyncio.create_task(self.prober.send()),
                asyncio.create_task(self.prober.poll()),
            ]
            try:
                await self._main_phases(generator, truth, settings)
                for task in probing:
                    task.cancel()
                for child in [api, *workers]:
                    await child.stop()
                copy = self.phase("raw COPY")
                self.figures["copy"] = await raw_copy(copy_conn, truth)
                copy.t1 = time.time()
                print(f"bench: raw COPY: {self.figures['copy']}", file=sys.stderr, flush=True)
                self.figures["baseline"] = await self.baseline()
            finally:
                for task in [metering, *probing]:
                    task.cancel()
                await asyncio.gather(metering, *probing, return_exceptions=True)
                for conn in conns:
                    await conn.close()
                await redis.aclose()
        return self.figures

    async def _main_phases(self, generator: Child, truth: Path, settings: Settings) -> None:
        self.stats.path.unlink(missing_ok=True)
        generator.start()
        for _ in range(300):
            self.stats.refresh()
            if self.stats.rows:
                break
            await asyncio.sleep(0.1)
        warm = self.phase("warm-up")
        await self.steer()
        await self.hold(5)
        warm.t1 = time.time()
        held = await self.sustained()
        capacity, single = await self.capacity()
        chosen = max(100.0, min(0.4 * held, capacity / 10) // 100 * 100)
        self.figures |= {"C": held, "capacity": capacity, "single": single, "N": chosen}
        await self.bursts(chosen)
        for task in self.probing:
            task.cancel()
        stop = self.phase("generator stops")
        await generator.stop(grace_s=180)
        stop.t1 = time.time()
        checker = self.phase("checker")
        _, report = await verify(self.database_url, truth, settings, 300)
        checker.t1 = time.time()
        self.figures["verify"] = {
            "expected": report.expected,
            "stored": report.stored,
            "lost": report.lost,
            "doubled": report.doubled,
            "mismatched": report.mismatched,
            "corrected": report.corrected_keys,
            "lines": report.lines(self.run_id),
        }
        print("\n".join(report.lines(self.run_id)), file=sys.stderr, flush=True)

    async def baseline(self) -> dict[str, float]:
        stack = self.stack
        child = stack.baseline_child()
        await stack.start_http(child)
        out: dict[str, float] = {}
        engine = create_async_engine(async_url(self.database_url))
        seconds = self.args.baseline_seconds
        try:
            phase = self.phase("baseline, batch 100")
            stats = RESULTS / "bench-baseline-100.jsonl"
            async with engine.connect() as db:
                before = await baseline_count(db)
            started = time.time()
            gen = stack.child(
                "generator-baseline",
                [
                    *GENERATE,
                    *("--url", f"http://127.0.0.1:{child.port}", "--rate", str(BIG)),
                    *("--duration", str(seconds), "--batch-size", "100", "--concurrency", "16"),
                    *("--no-follow", "--correction-rate", "0", "--stats", str(stats)),
                ],
            )
            gen.start()
            await gen.wait(seconds + 150)
            elapsed = time.time() - started
            async with engine.connect() as db:
                after = await baseline_count(db)
            rows = GenStats(stats)
            rows.refresh()
            p50, p99 = rows.latency(started + 3, started + seconds)
            out["batch100"] = rows.rate(started + 3, started + seconds)
            out["batch100_total"] = (after - before) / elapsed
            phase.t1 = time.time()
            phase.info = {"stored": out["batch100"], "p50": p50, "p99": p99}
            print(f"bench: {phase.name}: {phase.info}", file=sys.stderr, flush=True)
            single = self.phase("baseline, single events (wrk)")
            result = await wrk(
                f"http://127.0.0.1:{child.port}", seconds, f"{self.run_id}-base", self.meter
            )
            single.t1 = time.time()
            single.info = result or {}
            out["single"] = (result or {}).get("rps", math.nan)
            print(f"bench: {single.name}: {single.info}", file=sys.stderr, flush=True)
        finally:
            await engine.dispose()
            await child.stop()
        return out


def _truth_lines(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rb") as file:
        for raw in file:
            line = orjson.loads(raw)
            if "t" in line and not line.get("u"):
                yield line


async def raw_copy(conn: asyncpg.Connection, truth: Path) -> dict[str, float]:
    """COPY the run's final rows (one per key) into empty events and readings tables."""
    latest: dict[tuple[str, str, int], dict[str, Any]] = {}
    for line in _truth_lines(truth):
        latest[(line["t"], line["d"], line["ts"])] = line
    events, readings = [], []
    for seq, line in enumerate(latest.values()):
        ts = datetime.fromtimestamp(parse_ts(line["ts"], "ts") / 1_000_000, UTC)
        metrics = line["m"]
        events.append(
            (
                line["t"],
                line["d"],
                ts,
                line["id"],
                line["s"],
                orjson.dumps(metrics).decode(),
                line["g"],
                seq,
            )
        )
        for name, value in metrics.items():
            readings.append((line["t"], line["d"], name, ts, line["s"], float(value), seq))
    await truncate_storage(conn)
    started = time.perf_counter()
    await copy_events(conn, events)
    events_s = time.perf_counter() - started
    await copy_readings(conn, readings)
    both_s = time.perf_counter() - started
    return {
        "events": len(events),
        "readings": len(readings),
        "events_only": len(events) / events_s,
        "events_and_readings": len(events) / both_s,
    }


# Report -------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def cpu_table(bench: Bench) -> list[str]:
    """% of one core per component, per phase (from /proc, sampled once a second)."""
    phases = [p for p in bench.phases if p.t1 > p.t0 and p.name not in ("drain", "checker")]
    components = sorted({c for s in bench.meter.samples for c in s.cpu} - {BOX})
    lines = [
        "| phase | " + " | ".join(components) + " | **ours** | others on the box |",
        "|---|" + "---:|" * (len(components) + 2),
    ]
    for phase in phases:
        a, b = bench.meter.at(phase.t0), bench.meter.at(phase.t1)
        if b.t - a.t < 2:
            continue
        share = {
            c: 100 * (b.cpu.get(c, 0.0) - a.cpu.get(c, 0.0)) / (b.t - a.t)
            for c in [*components, BOX]
        }
        ours = sum(share[c] for c in components)
        cells = [f"{share[c]:.0f}" for c in components]
        cells += [f"**{ours:.0f}**", f"{max(0.0, share[BOX] - ours):.0f}"]
        lines.append(f"| {phase.name} | " + " | ".join(cells) + " |")
    return lines


def report(bench: Bench, figures: dict[str, Any]) -> str:
    phases = {p.name: p for p in bench.phases}
    steps = [p for p in bench.phases if "target" in p.info]
    held, capacity, chosen = figures["C"], figures["capacity"], figures["N"]
    copy, base = figures.get("copy", {}), figures.get("baseline", {})
    bursts = [p for p in bench.phases if "probes" in p.info]
    burst = next((p for p in bursts if p.name.startswith("burst")), None)
    probes = [latency for _, latency in bench.prober.seen]
    check = figures.get("verify", {})
    lines = [
        "# End-to-end benchmark",
        "",
        f"{datetime.fromtimestamp(bench.started, UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores "
        f"({platform.processor() or platform.machine()}), shared by everything below: one API "
        f"process, {bench.args.workers} worker processes, PostgreSQL, a private Redis (AOF "
        "everysec), the generator (its own process) and this script. "
        f"{bench.args.devices} simulated sensors, 2 tenants, batches of 500.",
        "",
        "## Sustained rate",
        "",
        "Each step holds its rate for "
        f"{bench.args.step_seconds:g} s; figures over its last two thirds. A step holds when "
        "the API takes ≥ 90 % of the offered rate and the stream backlog does not trend up "
        "(least-squares growth over the window ≤ 3 % of the entries added, or ≤ 4 entries).",
        "",
        "| target ev/s | accepted ev/s | stored ev/s | backlog growth (entries) | "
        "202 p50 ms | 202 p99 ms | holds |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for step in steps:
        i = step.info
        lines.append(
            f"| {i['target']:,} | {_fmt(i['accepted'])} | {_fmt(i['stored'])} | {i['growth']} | "
            f"{_fmt(i['p50'], 1)} | {_fmt(i['p99'], 1)} | {'yes' if i['holds'] else '**no**'} |"
        )
    single = figures["single"]
    lines += [
        "",
        f"**C = {held:,.0f} events/s** sustained (the last step that held).",
        "",
        "## Absorption capacity of the API",
        "",
        "The generator as fast as it can for "
        f"{bench.args.capacity_seconds:g} s (the workers fall behind; the stream holds it):",
        "",
        "| requests | accepted ev/s | 202 p50 ms | 202 p99 ms |",
        "|---|---:|---:|---:|",
    ]
    batch = phases["max, batch 500"].info if "max, batch 500" in phases else {}
    lines.append(
        f"| batches of 500 (generator, 8 in flight) | {_fmt(batch.get('accepted'))} | "
        f"{_fmt(batch.get('p50'), 1)} | {_fmt(batch.get('p99'), 1)} |"
    )
    one = phases["single events (wrk)"].info if "single events (wrk)" in phases else {}
    lines.append(
        f"| single events (wrk -t1 -c16) | {_fmt(one.get('rps'))} | {_fmt(one.get('p50'), 1)} | "
        f"{_fmt(one.get('p99'), 1)} |"
    )
    lines += [
        "",
        f"**Chosen N = {chosen:,.0f} events/s** = min(0.4 C, capacity / 10) = "
        f"min({0.4 * held:,.0f}, {capacity / 10:,.0f}). A 10x burst for 10 s leaves "
        "10 s x (10N - C) events queued, which must drain in the 50 s before the next burst at "
        "C - N: 100N - 10C <= 50C - 50N, so N <= 0.4 C; and the API must take 10N while it lasts.",
        "",
        "## Bursts at N (seed 000: 10x for 10 s every 60 s)",
        "",
        "| window | offered ev/s | accepted ev/s | 202 p50 ms | 202 p99 ms | "
        "ingest-to-queryable p50 ms | p99 ms | probes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for phase in bursts:
        i = phase.info
        lines.append(
            f"| {phase.name} | {_fmt(i['offered'])} | {_fmt(i['accepted'])} | "
            f"{_fmt(i['p50'], 1)} | {_fmt(i['p99'], 1)} | {_fmt(i['probe_p50'])} | "
            f"{_fmt(i['probe_p99'])} | {i['probes']} |"
        )
    if burst is not None:
        lines += [
            "",
            f"Backlog peak {burst.info['backlog_peak']} entries (~{burst.info['backlog_peak'] * 500:,}"
            f" events); drained {_fmt(burst.info['drain_s'], 1)} s after the burst ended.",
        ]
    lines += [
        "",
        "## Ingest-to-queryable",
        "",
        "A probe event every 250 ms through POST /v1/events, polled every 20 ms in `events` "
        "(the table the read API serves), over the whole run: "
        f"p50 {_fmt(percentile(probes, 0.5) * 1000)} ms, p99 {_fmt(percentile(probes, 0.99) * 1000)}"
        f" ms ({len(probes)} probes; resolution ~20 ms).",
        "",
        "## Against the naive baseline and raw COPY",
        "",
        "| system | events/s | ours as a ratio |",
        "|---|---:|---:|",
        f"| ours, sustained (C) | {held:,.0f} | 1.00 |",
    ]
    if base.get("batch100"):
        label = "naive baseline, batches of 100 (one INSERT + COMMIT per event), generator"
        lines.append(f"| {label} | {base['batch100']:,.0f} | {held / base['batch100']:.1f}x |")
    for key, label in (
        ("events_and_readings", "raw COPY of the same rows into events + readings"),
        ("events_only", "raw COPY into events only"),
    ):
        if copy.get(key):
            lines.append(f"| {label} | {copy[key]:,.0f} | {held / copy[key]:.2f} |")
    if not math.isnan(base.get("single", math.nan)) and single:
        base_one = phases["baseline, single events (wrk)"].info
        lines += [
            "",
            "Single-event requests with wrk -t1 -c16 (acknowledged = 202 durably in the "
            "stream for ours, 200 committed for the baseline): "
            f"ours {single:,.0f} requests/s (p99 {_fmt(one.get('p99'), 1)} ms), the baseline "
            f"{base['single']:,.0f} (p99 {_fmt(base_one.get('p99'), 1)} ms): "
            f"{single / base['single']:.1f}x.",
        ]
    lines += [
        "",
        "## CPU per component (% of one core)",
        "",
        *cpu_table(bench),
        "",
        "## Checker over the whole run",
        "",
        "```",
        *check.get("lines", ["not run"]),
        "```",
        "",
        "![rate, backlog and latency over time](bench.png)",
        "",
    ]
    return "\n".join(lines)


def plot(bench: Bench, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = bench.started
    rows = bench.stats.rows
    fig, (rate_ax, backlog_ax, latency_ax) = plt.subplots(3, 1, sharex=True, figsize=(13, 9))
    pairs = list(itertools.pairwise(rows))
    xs = [b["t"] - t0 for _, b in pairs]
    rate_ax.plot(
        xs,
        [(b["accepted"] - a["accepted"]) / max(1e-9, b["t"] - a["t"]) for a, b in pairs],
        label="accepted (202)",
        lw=1,
    )
    rate_ax.step(
        xs,
        [b["target_rate"] if b["target_rate"] < BIG else math.nan for _, b in pairs],
        where="post",
        label="target",
        lw=1,
        ls="--",
    )
    samples = bench.meter.samples
    # Workers commit in lumps (up to BATCH_ENTRIES entries at once): a 5 s window reads better.
    windows = list(zip(samples, samples[5:], strict=False))
    rate_ax.plot(
        [b.t - t0 for _, b in windows],
        [
            (b.stored - a.stored) / max(1e-9, b.t - a.t) if b.stored >= a.stored else math.nan
            for a, b in windows
        ],
        label="stored (workers, 5 s mean)",
        lw=1,
    )
    for batch in (100,):
        base = GenStats(RESULTS / f"bench-baseline-{batch}.jsonl")
        base.refresh()
        bp = list(zip(base.rows, base.rows[1:], strict=False))
        if bp:
            rate_ax.plot(
                [b["t"] - t0 for _, b in bp],
                [(b["accepted"] - a["accepted"]) / max(1e-9, b["t"] - a["t"]) for a, b in bp],
                label=f"naive baseline, batch {batch}",
                lw=1,
            )
    rate_ax.set_ylabel("events/s")
    rate_ax.legend(loc="upper left", fontsize=8)
    backlog_ax.plot([s.t - t0 for s in samples], [max(0, s.backlog) for s in samples], lw=1)
    backlog_ax.set_ylabel("stream backlog (entries)")
    lat_rows = [r for r in rows if r["latency_n"]]
    latency_ax.plot(
        [r["t"] - t0 for r in lat_rows],
        [r["latency_p50"] * 1000 for r in lat_rows],
        label="202 p50",
        lw=1,
    )
    latency_ax.plot(
        [r["t"] - t0 for r in lat_rows],
        [r["latency_p99"] * 1000 for r in lat_rows],
        label="202 p99",
        lw=1,
    )
    latency_ax.scatter(
        [sent - t0 for sent, _ in bench.prober.seen],
        [latency * 1000 for _, latency in bench.prober.seen],
        s=3,
        label="ingest-to-queryable",
        color="black",
    )
    latency_ax.set_yscale("log")
    latency_ax.set_ylabel("ms")
    latency_ax.set_xlabel("seconds since start")
    latency_ax.legend(loc="upper left", fontsize=8)
    for index, phase in enumerate(p for p in bench.phases if p.t1 > p.t0):
        for ax in (rate_ax, backlog_ax, latency_ax):
            ax.axvspan(phase.t0 - t0, phase.t1 - t0, color="grey", alpha=0.06 + 0.06 * (index % 2))
        rate_ax.annotate(
            phase.name,
            (phase.t0 - t0, 1.0),
            xycoords=("data", "axes fraction"),
            fontsize=6,
            rotation=60,
            va="bottom",
        )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bench_database_url() -> str:
    url = make_url(dsn(get_settings().database_url)).set(database="telemetry_bench_e2e")
    return url.render_as_string(hide_password=False)


async def main(args: argparse.Namespace) -> Path:
    RESULTS.mkdir(exist_ok=True)
    for stale in RESULTS.glob("bench-*.jsonl"):
        stale.unlink()
    url = bench_database_url()
    recreate(url)
    env = {
        "DATABASE_URL": url,
    }
    async with Stack(RESULTS / "bench-logs", env) as stack:
        bench = Bench(args, stack, url)
        try:
            figures = await bench.run()
        finally:
            (RESULTS / "bench.json").write_bytes(
                orjson.dumps(
                    {
                        "phases": [asdict(p) for p in bench.phases],
                        "figures": bench.figures,
                        "args": vars(args),
                    },
                    option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY,
                    default=str,
                )
            )
    plot(bench, RESULTS / "bench.png")
    out = RESULTS / "bench.md"
    out.write_text(report(bench, figures))
    return out


def cli() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--rates",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[1000, 2000, 3000, 4000, 5000, 6000, 8000, 10000, 12000],
        help="comma-separated steps, events/s",
    )
    parser.add_argument("--step-seconds", type=float, default=20.0)
    parser.add_argument("--capacity-seconds", type=float, default=10.0)
    parser.add_argument("--baseline-seconds", type=float, default=15.0)
    parser.add_argument("--drain-limit", type=float, default=120.0, help="seconds")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--devices", type=int, default=2000)
    out = asyncio.run(main(parser.parse_args()))
    print(out.read_text())


if __name__ == "__main__":
    cli()
