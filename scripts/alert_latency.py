"""Alert latency under the generator's load: event accepted → SSE line, p50/p99.

    python -m scripts.alert_latency [--duration 90] [--rate 1000] [--redis-db 13]

Starts its own stack on a fresh database (telemetry_alert_latency) and the given Redis db
(flushed first): the API and two workers, as `make run` does. It registers rules that the
generated traffic exercises on every event (temperature with hysteresis and `for`, power
with a cooldown), runs `scripts.generate` (the seed-000 profile: a sustained rate with a
10x burst for 10 s each minute), and meanwhile sends probe events for one device whose
rule fires and resolves on alternate probes, one probe in flight at a time. The latency of
a probe runs from sending its POST /v1/events to its `data:` line arriving on
/v1/alerts/stream?device_id=latency-probe; it therefore includes the ingest request.
"""

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import orjson
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from app.alerts.evaluator import format_time
from app.core.settings import dsn, get_settings
from scripts.schema import recreate

ROOT = Path(__file__).resolve().parent.parent
PROBE = "latency-probe"
LOAD_RULES = (
    {
        "metric": "temperature_c",
        "op": ">",
        "threshold": 30,
        "clear_threshold": 28,
        "for": "30s",
    },
    {"metric": "power_w", "op": ">", "threshold": 9000, "cooldown": "5m"},
    {"site_id": "site-007", "metric": "voltage_v", "op": "<", "threshold": 228},
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def stack(env: dict[str, str], metrics_ports: list[int]) -> AsyncIterator[str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    children = [
        await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "uvicorn", "app.main:app", "--fd", str(listener.fileno())),
            *("--log-level", "warning", "--no-access-log"),
            env=env,
            cwd=ROOT,
            pass_fds=(listener.fileno(),),
        )
    ]
    for index, port in enumerate(metrics_ports):
        children.append(
            await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "workers", "--name", f"latency-{index}"),
                *("--metrics-port", str(port)),
                env=env,
                cwd=ROOT,
            )
        )
    try:
        async with httpx.AsyncClient(base_url=base, timeout=2) as http, asyncio.timeout(60):
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield base
    finally:
        listener.close()
        for child in children:
            if child.returncode is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                await asyncio.wait_for(child.wait(), timeout=20)
            except TimeoutError:
                child.kill()
                await child.wait()


class Probe:
    """SSE lines of the probe device, keyed by the alert's event time."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def listen(self, http: httpx.AsyncClient, ready: asyncio.Event) -> None:
        params = {"device_id": PROBE}
        async with http.stream("GET", "/v1/alerts/stream", params=params, timeout=None) as sse:
            async for line in sse.aiter_lines():
                if line == ": connected":
                    ready.set()
                if line.startswith("data: "):
                    now = time.perf_counter()
                    self.arrived[orjson.loads(line[6:])["time"]] = now
                    self.changed.set()

    async def wait(self, key: str, limit_s: float) -> float | None:
        async with asyncio.timeout(limit_s):
            while key not in self.arrived:
                self.changed.clear()
                await self.changed.wait()
        return self.arrived.get(key)


async def mean_seconds(http: httpx.AsyncClient, ports: list[int], name: str) -> float:
    """The mean of a histogram over the workers' Prometheus endpoints."""
    total = count = 0.0
    for port in ports:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
        for line in text.splitlines():
            if line.startswith(f"{name}_sum "):
                total += float(line.split()[1])
            elif line.startswith(f"{name}_count "):
                count += float(line.split()[1])
    return total / count if count else 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> None:
    base_settings = get_settings()
    url = make_url(dsn(base_settings.database_url)).set(database=args.database)
    settings = base_settings.model_copy(
        update={
            "database_url": url.render_as_string(hide_password=False),
            "redis_url": base_settings.redis_url.rsplit("/", 1)[0] + f"/{args.redis_db}",
        }
    )
    recreate(settings.database_url)
    redis = Redis.from_url(settings.redis_url)
    await redis.flushdb()
    tag = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        # A latency run, not a durability one: the machine's Redis may keep nothing on disk.
        "ALLOW_VOLATILE_QUEUE": "true",
        "ALERT_CHANNEL": f"latency:{tag}:alerts",
        "ALERT_RULES_CHANNEL": f"latency:{tag}:rules",
        "LOG_LEVEL": "WARNING",
    }
    latencies: list[float] = []
    after_accept: list[float] = []
    sent_at: list[float] = []
    refused = lost = 0
    ports = [free_port() for _ in range(args.workers)]
    async with stack(env, ports) as base, httpx.AsyncClient(base_url=base) as http:
        for tenant in ("default", "tenant-2"):
            for rule in LOAD_RULES:
                response = await http.post("/v1/alerts", json=rule, headers={"X-Tenant-ID": tenant})
                response.raise_for_status()
        rule = {"device_id": PROBE, "metric": "probe", "op": ">", "threshold": 0.5}
        (await http.post("/v1/alerts", json=rule)).raise_for_status()
        probe, ready = Probe(), asyncio.Event()
        listener = asyncio.create_task(probe.listen(http, ready))
        await asyncio.wait_for(ready.wait(), timeout=10)
        generator = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "scripts.generate", "--url", base, "--quiet", "--no-follow"),
            *("--duration", str(args.duration), "--rate", str(args.rate)),
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
        )
        serial = 0
        started = time.perf_counter()
        while generator.returncode is None:
            serial += 1
            ts_ms = int(time.time() * 1000)
            body = {
                "event_id": f"probe-{serial}",
                "device_id": PROBE,
                "ts": ts_ms,
                "metrics": {"probe": float(serial % 2)},
            }
            sent = time.perf_counter()
            response = await http.post("/v1/events", json=body, timeout=30)
            accepted = time.perf_counter()
            if response.status_code != 202:
                refused += 1
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            try:
                arrived = await probe.wait(format_time(ts_ms * 1000), 30)
            except TimeoutError:
                lost += 1
                continue
            assert arrived is not None
            latencies.append(arrived - sent)
            after_accept.append(max(0.0, arrived - accepted))
            sent_at.append(sent - started)
            # Pacing between probes, so that they sample the whole run.
            await asyncio.sleep(args.interval)
        await generator.wait()
        eval_s = await mean_seconds(http, ports, "telemetry_alert_eval_seconds")
        upsert_s = await mean_seconds(http, ports, "telemetry_worker_upsert_seconds")
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await listener
    conn = await asyncpg.connect(dsn(settings.database_url))
    stored = await conn.fetchval("SELECT count(*) FROM events")
    history = await conn.fetchval("SELECT count(*) FROM alert_history")
    await conn.close()
    transitions = await redis.xlen(settings.alert_stream)
    await redis.aclose()
    ms = [value * 1000 for value in latencies]
    acc = [value * 1000 for value in after_accept]
    print(f"## Alert latency under load ({args.rate:g} events/s, 10x bursts, {args.duration:g} s)")
    print()
    print("| measure | n | p50 ms | p90 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|")
    for name, values in (("POST sent → SSE line", ms), ("202 received → SSE line", acc)):
        if values:
            print(
                f"| {name} | {len(values)} | {percentile(values, 0.5):.1f} | "
                f"{percentile(values, 0.9):.1f} | {percentile(values, 0.99):.1f} | "
                f"{max(values):.1f} |"
            )
    print()
    print("| probes sent at (s) | n | p50 ms | max ms |")
    print("|---|---|---|---|")
    for start in range(0, int(args.duration) + 1, 10):
        window = [v for v, at in zip(ms, sent_at, strict=True) if start <= at < start + 10]
        if window:
            print(
                f"| {start}-{start + 10} | {len(window)} | {percentile(window, 0.5):.1f} | "
                f"{max(window):.1f} |"
            )
    print()
    print(
        f"events stored {stored}, alert transitions {transitions}, history rows {history}, "
        f"probes refused {refused}, probes without a line {lost}; per batch: "
        f"alert evaluation {eval_s * 1000:.2f} ms, upsert {upsert_s * 1000:.2f} ms (means)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.alert_latency", description=__doc__)
    parser.add_argument("--duration", type=float, default=90.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="generator events/s")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between probes")
    parser.add_argument("--database", default="telemetry_alert_latency")
    parser.add_argument("--redis-db", type=int, default=13, help="flushed before the run")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
