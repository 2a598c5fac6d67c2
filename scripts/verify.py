"""`python -m scripts.verify --ground-truth FILE`: prove what a generator run must have stored.

Reads the ground truth (`scripts.generate`) and compares it with the database:

- lost: acknowledged events whose (tenant, device, ts) has no row;
- doubled: rows beyond the first for one event id, plus rows for keys the run never sent;
- mismatched: rows whose content is not the latest acknowledged write of their key
  (latest-write-wins), per-minute aggregates of `readings` (count, sum, min, max per device
  and metric) that differ from the same aggregates recomputed from the ground truth, and
  device_status rows that are not the newest reading of their metric.

Exits 1 when any count is above zero. `--wait S` first waits (at most S seconds) for the
stream backlog to drain and the rows to arrive.
"""

import argparse
import asyncio
import gzip
import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.core.redis import as_redis, create_cluster, initialize
from app.core.settings import Settings, dsn, get_settings
from app.core.shards import all_shards
from app.core.streams import text
from scripts.sql.verify import count_events, minute_aggregates, status_rows, stored_events

Key = tuple[str, str, int]
# event_id, site_id, metrics, tags: one acknowledged version of a key.
Version = tuple[str, str | None, dict[str, float], list[str]]
Bucket = tuple[str, str, int]
MAX_SAMPLES = 10


@dataclass(slots=True)
class Expected:
    confirmed: Version | None = None
    # Versions sent but never acknowledged (the generator gave up): may or may not be stored.
    maybe: list[Version] = field(default_factory=list)
    corrected: bool = False


@dataclass(slots=True)
class Truth:
    run: str
    devices: dict[str, list[str]]
    keys: dict[Key, Expected]

    @property
    def expected(self) -> int:
        return sum(1 for e in self.keys.values() if e.confirmed is not None)

    @property
    def unconfirmed(self) -> int:
        return sum(1 for e in self.keys.values() if e.confirmed is None)


@dataclass(slots=True)
class Report:
    expected: int = 0
    unconfirmed: int = 0
    stored: int = 0
    lost: int = 0
    duplicate_ids: int = 0
    unexpected: int = 0
    mismatched_events: int = 0
    mismatched_aggregates: int = 0
    mismatched_status: int = 0
    aggregate_buckets: int = 0
    corrected_keys: int = 0
    samples: list[str] = field(default_factory=list)

    @property
    def doubled(self) -> int:
        return self.duplicate_ids + self.unexpected

    @property
    def mismatched(self) -> int:
        return self.mismatched_events + self.mismatched_aggregates + self.mismatched_status

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.doubled == 0 and self.mismatched == 0

    def note(self, message: str) -> None:
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(message)

    def lines(self, run: str) -> list[str]:
        return [
            f"verify: run {run}: {self.expected} acknowledged events expected "
            f"({self.unconfirmed} more unacknowledged), {self.stored} rows stored",
            f"lost: {self.lost}",
            f"doubled: {self.doubled} (extra rows per event id {self.duplicate_ids}, "
            f"rows never sent {self.unexpected})",
            f"mismatched: {self.mismatched} (events {self.mismatched_events}, aggregates "
            f"{self.mismatched_aggregates} of {self.aggregate_buckets} minute buckets, "
            f"status {self.mismatched_status})",
            f"latest-write-wins: {self.corrected_keys} corrected keys checked",
            *(f"  e.g. {sample}" for sample in self.samples),
        ]


def _lines(path: Path) -> Iterator[bytes]:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        yield from file


def load_truth(path: Path) -> Truth:
    """The ground truth; later lines of a key win, as the generator writes them in
    acknowledgement order."""
    truth = Truth(run="?", devices={}, keys={})
    for raw in _lines(path):
        if not raw.strip():
            continue
        line = orjson.loads(raw)
        if "truth" in line:
            truth.run = line.get("run", "?")
            truth.devices = line["devices"]
            continue
        if "end" in line:
            continue
        key = (line["t"], line["d"], line["ts"])
        version: Version = (line["id"], line.get("s"), line["m"], line.get("g") or [])
        expected = truth.keys.get(key)
        if expected is None:
            expected = truth.keys[key] = Expected()
        if line.get("u"):
            expected.maybe.append(version)
        else:
            if expected.confirmed is not None and expected.confirmed[0] != version[0]:
                expected.corrected = True
            expected.confirmed = version
            expected.maybe = [v for v in expected.maybe if v[0] != version[0]]
    return truth


def _matches(row: asyncpg.Record, version: Version) -> bool:
    event_id, site, metrics, tags = version
    return (
        row["event_id"] == event_id
        and row["site_id"] == site
        and orjson.loads(row["metrics"]) == metrics
        and list(row["tags"]) == tags
    )


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


async def check(conn: asyncpg.Connection, truth: Truth) -> Report:
    report = Report(expected=truth.expected, unconfirmed=truth.unconfirmed)
    report.corrected_keys = sum(1 for e in truth.keys.values() if e.corrected)
    for tenant, devices in truth.devices.items():
        await _check_tenant(conn, truth, tenant, devices, report)
    return report


async def _check_tenant(
    conn: asyncpg.Connection, truth: Truth, tenant: str, devices: list[str], report: Report
) -> None:
    keys = truth.keys
    # The version each key must hold: the confirmed one, or the unacknowledged version
    # the row shows was stored (an unacknowledged write may or may not have landed).
    resolved: dict[Key, Version] = {
        key: e.confirmed for key, e in keys.items() if key[0] == tenant and e.confirmed
    }
    seen: set[Key] = set()
    ids: Counter[str] = Counter()
    async for row in stored_events(conn, tenant, devices):
        report.stored += 1
        key = (tenant, row["device_id"], row["ts_ms"])
        ids[row["event_id"]] += 1
        expected = keys.get(key)
        if expected is None:
            report.unexpected += 1
            report.note(f"row never sent: {key} {row['event_id']}")
            continue
        seen.add(key)
        candidates = ([expected.confirmed] if expected.confirmed else []) + expected.maybe
        match = next((v for v in candidates if _matches(row, v)), None)
        if match is None:
            report.mismatched_events += 1
            wanted = candidates[0][0] if candidates else "?"
            report.note(f"{key}: stored {row['event_id']}, latest write is {wanted}")
        else:
            resolved[key] = match
    report.duplicate_ids += sum(count - 1 for count in ids.values() if count > 1)
    for key, expected in keys.items():
        if key[0] == tenant and expected.confirmed is not None and key not in seen:
            report.lost += 1
            report.note(f"lost: {key} {expected.confirmed[0]}")
    _compare_aggregates(resolved, await minute_aggregates(conn, tenant, devices), report)
    _compare_status(resolved, await status_rows(conn, tenant, devices), report)


def _compare_aggregates(
    resolved: dict[Key, Version], rows: list[asyncpg.Record], report: Report
) -> None:
    expected: dict[Bucket, list[float]] = {}
    for (_, device, ts), version in resolved.items():
        minute = ts // 60_000
        for metric, value in version[2].items():
            bucket = expected.get((device, metric, minute))
            if bucket is None:
                expected[(device, metric, minute)] = [1, value, value, value]
            else:
                bucket[0] += 1
                bucket[1] += value
                bucket[2] = min(bucket[2], value)
                bucket[3] = max(bucket[3], value)
    report.aggregate_buckets += len(expected)
    for row in rows:
        name = (row["device_id"], row["metric"], row["minute"])
        want = expected.pop(name, None)
        got = (row["count"], row["sum"], row["min"], row["max"])
        if want is None:
            report.mismatched_aggregates += 1
            report.note(f"aggregate for a bucket never sent: {name} {got}")
            continue
        if not (
            got[0] == want[0] and _same(got[1], want[1]) and got[2] == want[2] and got[3] == want[3]
        ):
            report.mismatched_aggregates += 1
            report.note(f"aggregate {name}: stored {got}, ground truth {tuple(want)}")
    for name, want in expected.items():
        report.mismatched_aggregates += 1
        report.note(f"aggregate {name} missing; ground truth {tuple(want)}")


def _compare_status(
    resolved: dict[Key, Version], rows: list[asyncpg.Record], report: Report
) -> None:
    newest: dict[tuple[str, str], tuple[int, float]] = {}
    for (_, device, ts), version in resolved.items():
        for metric, value in version[2].items():
            current = newest.get((device, metric))
            if current is None or ts > current[0]:
                newest[(device, metric)] = (ts, value)
    for row in rows:
        name = (row["device_id"], row["metric"])
        want = newest.pop(name, None)
        got = (row["ts_ms"], row["value"])
        if want != got:
            report.mismatched_status += 1
            report.note(f"status {name}: stored {got}, newest reading {want}")
    for name, want in newest.items():
        report.mismatched_status += 1
        report.note(f"status {name} missing; newest reading {want}")


async def backlog_entries(redis: Redis, stream: str, group: str) -> int:
    """Entries the group has not acknowledged (pending + not yet delivered), from one
    XINFO GROUPS reply: one command is one snapshot, while workers ack in between two."""
    groups: Any = await redis.xinfo_groups(stream)
    info = next((g for g in groups if g["name"] in (group, group.encode())), None)
    if info is None:
        return 0
    lag = info.get("lag")
    if lag is None:
        # Redis cannot tell the lag after deletions; count what is past the cursor.
        last = text(info["last-delivered-id"])
        rest: Any = await redis.xrange(stream, min=f"({last}", count=1_000_000)
        lag = len(rest)
    return int(info["pending"]) + int(lag)


async def wait_drained(
    conn: asyncpg.Connection, truth: Truth, settings: Settings, seconds: float
) -> None:
    """Wait until the stream's backlog is empty and every acknowledged key has a row."""
    deadline = time.monotonic() + seconds
    streams = [settings.stream]
    if settings.redis_cluster_url:
        # Every shard's stream, each with its own group (app/core/shards.py).
        cluster = create_cluster(settings)
        await initialize(cluster)
        redis = as_redis(cluster)
        streams = [shard.stream for shard in all_shards(settings)]
    else:
        redis = Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        while time.monotonic() < deadline:
            try:
                waiting = [await backlog_entries(redis, s, settings.group) for s in streams]
                drained = sum(waiting) == 0
            except (RedisError, OSError):
                drained = True  # no Redis to ask: the row count alone decides
            if drained:
                stored = 0
                for tenant, devices in truth.devices.items():
                    stored += await count_events(conn, tenant, devices)
                if stored >= truth.expected:
                    return
            await asyncio.sleep(0.25)
    finally:
        await redis.aclose()


async def verify(
    database_url: str, truth_path: Path, settings: Settings | None = None, wait_s: float = 0.0
) -> tuple[Truth, Report]:
    truth = load_truth(truth_path)
    conn = await asyncpg.connect(dsn(database_url))
    try:
        if wait_s > 0:
            await wait_drained(conn, truth, settings or get_settings(), wait_s)
        report = await check(conn, truth)
    finally:
        await conn.close()
    return truth, report


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.verify", description=__doc__)
    parser.add_argument("--ground-truth", type=Path, required=True)
    parser.add_argument("--database-url", default=None, help="default: DATABASE_URL")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the drain")
    args = parser.parse_args(argv)
    settings = get_settings()
    truth, report = asyncio.run(
        verify(args.database_url or settings.database_url, args.ground_truth, settings, args.wait)
    )
    print("\n".join(report.lines(truth.run)))
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(cli())
