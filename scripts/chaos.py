"""`python -m scripts.chaos`: long fault runs under the seed-000 generator profile, each
proven by the checker (0 lost, 0 doubled, 0 mismatched).

The stack runs as processes on free local ports: a private Redis with AOF (never the
machine's 6379), the API (uvicorn), two workers whose DATABASE_URL goes through the
brownout proxy (`scripts.proxy`), and the generator in this process. Scenarios:

- kill-workers: a worker SIGKILLed every few seconds and restarted (under the same name,
  which replays its own pending entries, or a new one, which reclaims them by XAUTOCLAIM);
- brownout: the database delayed, stalled, disconnected and refused for 30 s;
- redis-restart: Redis shut down and restarted twice (SHUTDOWN fsyncs the AOF); with
  --redis-crash the second one is a SIGKILL, where `--appendfsync everysec` may lose up to
  a second of acknowledged writes and `always` should lose none;
- api-restart: the API SIGKILLed and restarted, then stopped with SIGTERM and restarted.

Writes results/chaos.md; exits 1 when any scenario loses, doubles or mismatches anything.
"""

import argparse
import asyncio
import os
import random
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from app.core.settings import Settings, dsn, get_settings
from app.generator.config import GeneratorConfig
from scripts.generate import Counts, Options, generate
from scripts.proxy import Proxy, brownout
from scripts.schema import recreate
from scripts.stack import Child, Stack
from scripts.verify import Report, verify

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
SCENARIOS = ("kill-workers", "brownout", "redis-restart", "api-restart")


@dataclass
class Outcome:
    name: str
    seconds: float
    counts: Counts
    report: Report
    faults: list[str] = field(default_factory=list)


class Chaos:
    def __init__(self, args: argparse.Namespace, stack: Stack, database_url: str) -> None:
        self.args = args
        self.stack = stack
        self.database_url = database_url
        self.rng = random.Random(args.seed)
        self.proxy: Proxy
        self.redis: Child
        self.api: Child
        self.workers: list[Child] = []
        self.settings: Settings

    async def start(self) -> None:
        stack, args = self.stack, self.args
        self.redis = stack.redis_child(appendfsync=args.appendfsync)
        await stack.start_redis(self.redis)
        redis_url = f"redis://127.0.0.1:{self.redis.port}/0"
        pg = make_url(dsn(self.database_url))
        self.proxy = Proxy(pg.host or "127.0.0.1", pg.port or 5432)
        await self.proxy.start()
        through = pg.set(host="127.0.0.1", port=self.proxy.port)
        stack.env["REDIS_URL"] = redis_url
        self.api = stack.api_child()
        await stack.start_http(self.api)
        worker_env = {
            "DATABASE_URL": through.render_as_string(hide_password=False),
            "CLAIM_IDLE_MS": "3000",
            "CLAIM_INTERVAL_S": "1",
        }
        for index in range(args.workers):
            worker = stack.worker_child(f"chaos-w{index}", worker_env)
            worker.start()
            self.workers.append(worker)
        self.settings = get_settings().model_copy(
            update={"database_url": self.database_url, "redis_url": redis_url}
        )

    async def close(self) -> None:
        await self.proxy.close()

    # Scenarios ------------------------------------------------------------------------

    async def kill_workers(self, seconds: float, faults: list[str]) -> None:
        deadline = time.monotonic() + seconds - 5
        while time.monotonic() < deadline:
            await asyncio.sleep(self.rng.uniform(2.0, 5.0))
            victim = self.rng.choice(self.workers)
            victim.kill()
            if self.rng.random() < 0.5:
                # A new name: its entries wait for XAUTOCLAIM after CLAIM_IDLE_MS.
                victim.args[victim.args.index("--name") + 1] = f"{victim.name}-{victim.starts}"
            victim.start()
            faults.append(f"SIGKILL {victim.args[victim.args.index('--name') + 1]}")

    async def brownout(self, seconds: float, faults: list[str]) -> None:
        await asyncio.sleep(10)
        faults += await brownout(self.proxy, min(30.0, seconds - 15), self.rng)

    async def redis_restart(self, seconds: float, faults: list[str]) -> None:
        await asyncio.sleep(seconds / 4)
        await self.redis.stop()
        faults.append("Redis SHUTDOWN (SIGTERM)")
        await asyncio.sleep(2)
        await self.stack.start_redis(self.redis)
        await asyncio.sleep(seconds / 4)
        if self.args.redis_crash:
            self.redis.kill()
            faults.append(f"Redis SIGKILL (appendfsync {self.args.appendfsync})")
        else:
            await self.redis.stop()
            faults.append("Redis SHUTDOWN (SIGTERM)")
        await asyncio.sleep(2)
        await self.stack.start_redis(self.redis)

    async def api_restart(self, seconds: float, faults: list[str]) -> None:
        await asyncio.sleep(seconds / 4)
        self.api.kill()
        faults.append("API SIGKILL")
        await asyncio.sleep(1)
        await self.stack.start_http(self.api)
        await asyncio.sleep(seconds / 4)
        await self.api.stop()
        faults.append("API SIGTERM")
        await self.stack.start_http(self.api)

    async def scenario(self, name: str) -> Outcome:
        faults: list[str] = []
        actions: dict[str, Callable[[float, list[str]], Coroutine[Any, Any, None]]] = {
            "kill-workers": self.kill_workers,
            "brownout": self.brownout,
            "redis-restart": self.redis_restart,
            "api-restart": self.api_restart,
        }
        seconds = self.args.duration
        truth = RESULTS / f"chaos-{name}.ndjson.gz"
        config = GeneratorConfig(rate=self.args.rate)
        options = Options(
            url=f"http://127.0.0.1:{self.api.port}",
            duration_s=seconds,
            devices=self.args.devices,
            follow=False,
            quiet=not sys.stderr.isatty(),
            seed=self.rng.randrange(1 << 30),
            give_up_s=180,
            # Faults outlast the load: retries of the last batches get as long as give_up_s.
            grace_s=180,
        )
        print(f"chaos: {name}: {seconds:.0f} s at {self.args.rate:g} ev/s", file=sys.stderr)
        started = time.monotonic()
        load = asyncio.create_task(generate(options, config, truth))
        fault = asyncio.create_task(actions[name](seconds, faults))
        try:
            counts = await load
            await asyncio.wait_for(fault, timeout=60)
        finally:
            fault.cancel()
            self.proxy.resume()
        # Every process back up before the drain (a fault may have ended mid-restart).
        if not self.redis.running:
            await self.stack.start_redis(self.redis)
        if not self.api.running:
            await self.stack.start_http(self.api)
        for worker in self.workers:
            if not worker.running:
                worker.start()
        _, report = await verify(self.database_url, truth, self.settings, wait_s=180)
        outcome = Outcome(name, time.monotonic() - started, counts, report, faults)
        print("\n".join(report.lines(name)), file=sys.stderr, flush=True)
        return outcome


def markdown(outcomes: list[Outcome], args: argparse.Namespace) -> str:
    lines = [
        "# Chaos runs",
        "",
        f"{os.cpu_count()} cores; seed-000 profile at {args.rate:g} events/s (10x bursts "
        f"for 10 s every 60 s), {args.devices} sensors, {args.duration:g} s per scenario, "
        f"{args.workers} workers through the brownout proxy, Redis AOF appendfsync "
        f"{args.appendfsync}.",
        "",
        "| scenario | faults | sent | acknowledged | 429/503 retried | transport errors | "
        "lost | doubled | mismatched | corrected keys |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for o in outcomes:
        c, r = o.counts, o.report
        summary = f"{len(o.faults)}: " + ", ".join(sorted(set(f.split(" ")[0] for f in o.faults)))
        lines.append(
            f"| {o.name} | {summary} | {c.sent:,} | {r.expected:,} | "
            f"{c.retried_429 + c.retried_503:,} | {c.errors:,} | {r.lost} | {r.doubled} | "
            f"{r.mismatched} | {r.corrected_keys} |"
        )
    lines += ["", "Faults in order:", ""]
    for o in outcomes:
        lines.append(f"- {o.name}: {'; '.join(o.faults)}")
    return "\n".join(lines) + "\n"


async def main(args: argparse.Namespace) -> int:
    RESULTS.mkdir(exist_ok=True)
    url = make_url(dsn(get_settings().database_url)).set(database="telemetry_chaos")
    database_url = url.render_as_string(hide_password=False)
    recreate(database_url)
    outcomes: list[Outcome] = []
    async with Stack(RESULTS / "chaos-logs", {"DATABASE_URL": database_url}) as stack:
        chaos = Chaos(args, stack, database_url)
        try:
            await chaos.start()
            for name in args.scenarios:
                outcomes.append(await chaos.scenario(name))
        finally:
            await chaos.close()
    report = markdown(outcomes, args)
    (RESULTS / "chaos.md").write_text(report)
    print(report)
    return 0 if all(o.report.ok for o in outcomes) else 1


def cli() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--scenarios",
        type=lambda text: text.split(","),
        default=list(SCENARIOS),
        help=f"comma-separated, of {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per scenario")
    parser.add_argument("--rate", type=float, default=500.0, help="events/s outside bursts")
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--appendfsync", choices=("always", "everysec", "no"), default="everysec")
    parser.add_argument("--redis-crash", action="store_true", help="SIGKILL Redis once")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    raise SystemExit(asyncio.run(main(args)))


if __name__ == "__main__":
    cli()
