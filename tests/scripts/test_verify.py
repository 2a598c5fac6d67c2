"""The checker: silent on a complete run, and it notices each way storage can go wrong."""

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from app.core.settings import Settings
from app.core.streams import EventStream
from app.generator.config import GeneratorConfig
from scripts.generate import Options, generate
from scripts.verify import Report, Truth, backlog_entries, check, load_truth
from tests.fixtures.worker import RunWorker
from tests.helpers import post_batch
from workers.consumer import Worker
from workers.database import Database


@pytest.fixture
async def run(
    app: FastAPI, db: asyncpg.Connection, run_worker: RunWorker, tmp_path: Path
) -> tuple[Path, Truth]:
    """A small generator run, stored by a worker: 1 tenant, 8 devices, 10 % corrections."""
    config = GeneratorConfig(rate=400, correction_rate=0.1, duplicate_rate=0.05, batch_size=20)
    options = Options(quiet=True, devices=8, tenants=1, duration_s=0.5, seed=3)
    path = tmp_path / "truth.ndjson"
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        await generate(options, config, path, client=http)
    await run_worker()
    truth = load_truth(path)
    assert truth.expected > 100 and any(e.corrected for e in truth.keys.values())
    return path, truth


async def cli(settings: Settings, path: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scripts.verify",
        "--ground-truth",
        str(path),
        env={**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode()


def problems(report: Report) -> tuple[int, int, int]:
    return report.lost, report.doubled, report.mismatched


async def test_a_complete_run_reports_nothing_and_exits_0(
    run: tuple[Path, Truth], db: asyncpg.Connection, settings: Settings
) -> None:
    path, truth = run
    report = await check(db, truth)
    assert problems(report) == (0, 0, 0), report.lines(truth.run)
    assert report.stored == truth.expected and report.aggregate_buckets > 0
    code, out = await cli(settings, path)
    assert code == 0 and "lost: 0" in out and "doubled: 0" in out, out


async def test_a_missing_row_is_lost_and_the_cli_exits_1(
    run: tuple[Path, Truth], db: asyncpg.Connection, settings: Settings
) -> None:
    path, truth = run
    row = await db.fetchrow("SELECT device_id, ts FROM events LIMIT 1")
    assert row is not None
    await db.execute("DELETE FROM events WHERE device_id = $1 AND ts = $2", *row)
    await db.execute("DELETE FROM readings WHERE device_id = $1 AND ts = $2", *row)
    report = await check(db, truth)
    assert report.lost == 1 and report.doubled == 0
    assert report.mismatched_aggregates >= 1
    code, out = await cli(settings, path)
    assert code == 1 and "lost: 1" in out, out


async def test_extra_rows_and_second_copies_are_doubled(
    run: tuple[Path, Truth], db: asyncpg.Connection
) -> None:
    _, truth = run
    await db.execute(
        """
        INSERT INTO events (tenant_id, device_id, ts, event_id, site_id, metrics, tags, seq)
        SELECT tenant_id, device_id, ts + interval '1 hour', $1, site_id, metrics, tags, seq
        FROM events ORDER BY ts LIMIT 1
        """,
        "ghost",
    )
    await db.execute(
        """
        INSERT INTO events (tenant_id, device_id, ts, event_id, site_id, metrics, tags, seq)
        SELECT tenant_id, device_id, ts + interval '2 hours', event_id, site_id, metrics, tags, seq
        FROM events ORDER BY ts DESC LIMIT 1
        """
    )
    report = await check(db, truth)
    assert report.unexpected == 2 and report.duplicate_ids == 1 and report.doubled == 3
    assert report.lost == 0


async def test_an_older_version_winning_is_a_mismatch(
    run: tuple[Path, Truth], db: asyncpg.Connection
) -> None:
    _, truth = run
    (_, device, ts), expected = next((k, e) for k, e in truth.keys.items() if e.corrected)
    assert expected.confirmed is not None
    original = expected.confirmed[0].removesuffix("-c")
    await db.execute(
        "UPDATE events SET event_id = $1 WHERE device_id = $2 AND ts = to_timestamp($3 / 1000.0)",
        original,
        device,
        ts,
    )
    report = await check(db, truth)
    assert report.mismatched_events == 1 and report.mismatched_aggregates == 0
    assert any(original in sample for sample in report.samples)


async def test_a_changed_reading_breaks_its_aggregate_and_status(
    run: tuple[Path, Truth], db: asyncpg.Connection
) -> None:
    _, truth = run
    row = await db.fetchrow("SELECT device_id, metric, ts FROM device_status LIMIT 1")
    assert row is not None
    await db.execute(
        "UPDATE readings SET value = value + 1 WHERE device_id = $1 AND metric = $2 AND ts = $3",
        *row,
    )
    await db.execute(
        "UPDATE device_status SET value = value + 1 WHERE device_id = $1 AND metric = $2",
        row["device_id"],
        row["metric"],
    )
    report = await check(db, truth)
    assert (report.mismatched_aggregates, report.mismatched_status) == (1, 1)
    assert report.lost == report.doubled == report.mismatched_events == 0


async def test_unacknowledged_versions_may_or_may_not_be_stored(
    client: httpx.AsyncClient, db: asyncpg.Connection, run_worker: RunWorker, tmp_path: Path
) -> None:
    def line(event_id: str, ts: int, unacknowledged: bool = False) -> bytes:
        record = {"t": "default", "d": "dev", "ts": ts, "id": event_id, "s": "s1"}
        record |= {"m": {"x": 1.0}, "g": []} | ({"u": 1} if unacknowledged else {})
        return orjson.dumps(record)

    base = 1_760_000_000_000
    header = orjson.dumps({"truth": 1, "run": "hand", "devices": {"default": ["dev"]}})
    lines = [header, line("a", base), line("b", base + 1, True), line("c", base + 2, True)]
    path = tmp_path / "truth.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    stored = [("a", base), ("c", base + 2)]
    await post_batch(
        client,
        [
            {"event_id": i, "device_id": "dev", "ts": ts, "site_id": "s1", "metrics": {"x": 1.0}}
            for i, ts in stored
        ],
    )
    await run_worker()
    truth = load_truth(path)
    assert (truth.expected, truth.unconfirmed) == (1, 2)
    report = await check(db, truth)
    assert problems(report) == (0, 0, 0), report.lines(truth.run)
    assert report.stored == 2


class AckBetween:
    """A Redis client that acknowledges every pending entry right after XINFO GROUPS
    answers: the window in which a busy worker acks between two reads."""

    def __init__(self, redis: Redis, stream: str, group: str) -> None:
        self.redis, self.stream, self.group = redis, stream, group

    async def xinfo_groups(self, stream: str) -> Any:
        groups = await self.redis.xinfo_groups(stream)
        pending: Any = await self.redis.xpending_range(stream, self.group, "-", "+", 100)
        if pending:
            await self.redis.xack(stream, self.group, *[p["message_id"] for p in pending])
        return groups

    def __getattr__(self, name: str) -> Any:
        return getattr(self.redis, name)


async def test_backlog_is_read_in_one_snapshot_while_workers_ack(
    redis: Redis, settings: Settings
) -> None:
    stream, group = settings.stream, settings.group
    await redis.xgroup_create(stream, group, id="0", mkstream=True)
    for _ in range(3):
        await redis.xadd(stream, {"n": 1, "d": b"{}"})
    await redis.xreadgroup(group, "busy", {stream: ">"}, count=2)
    assert await backlog_entries(redis, stream, group) == 3
    # Entries acked between reads: the count is of one moment, never a crash.
    racing: Any = AckBetween(redis, stream, group)
    assert await backlog_entries(racing, stream, group) == 3
    assert await backlog_entries(redis, stream, group) == 1


async def test_the_api_backlog_and_the_worker_trim_survive_acks_between_their_reads(
    redis: Redis, settings: Settings
) -> None:
    # The benchmark found this: under load the API answered 500 and workers paused 1 s,
    # because XPENDING came back empty (min None) after XINFO GROUPS had counted pending.
    stream, group = settings.stream, settings.group
    await redis.xgroup_create(stream, group, id="0", mkstream=True)
    for _ in range(3):
        await redis.xadd(stream, {"n": 1, "d": b"{}"})
    await redis.xreadgroup(group, "busy", {stream: ">"}, count=2)
    racing: Any = AckBetween(redis, stream, group)
    backlog = await EventStream(racing, stream, group).backlog()
    assert backlog.entries == 3 and backlog.oldest_age_s >= 0
    await redis.xreadgroup(group, "busy", {stream: ">"}, count=1)
    worker = Worker(settings, racing, Database(settings), name="trimmer", burst=True)
    await worker.trim()
    assert await redis.xlen(stream) == 3
