"""Short fault runs under generator load, each proven by the checker: nothing lost, nothing
doubled. A worker SIGKILLed mid-batch, a database brownout through a TCP proxy, a Redis
restart with AOF, an API SIGKILLed and restarted. (Long versions: `python -m scripts.chaos`.)
"""

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from app.core.settings import Settings, dsn
from app.generator.config import GeneratorConfig
from app.main import create_app
from scripts.generate import Counts, Generator, Options, TruthWriter, truth_header
from scripts.proxy import Proxy
from scripts.stack import Stack
from scripts.verify import Report, check, load_truth, wait_drained
from tests.helpers import wait_for
from workers.consumer import Worker
from workers.database import Database

pytestmark = pytest.mark.slow

LOAD = GeneratorConfig(rate=400, batch_size=25, correction_rate=0.01, max_out_of_order_ms=500)


class Load:
    """A generator running in the background, writing its ground truth."""

    def __init__(self, client: httpx.AsyncClient, path: Path, seconds: float) -> None:
        options = Options(
            quiet=True, devices=60, duration_s=seconds, follow=False, give_up_s=45, seed=11
        )
        self.path = path
        self.generator = Generator(options, LOAD, client)
        self.generator.truth = TruthWriter(path, truth_header(self.generator))
        self.task = asyncio.create_task(self.generator.run())

    @property
    def counts(self) -> Counts:
        return self.generator.counts

    async def confirmed(self, count: int) -> None:
        async def enough() -> bool:
            if self.task.done():
                self.task.result()
            return self.counts.confirmed >= count

        await wait_for(enough, 30)

    async def finish(self) -> Counts:
        try:
            counts = await asyncio.wait_for(self.task, timeout=90)
        finally:
            assert self.generator.truth is not None
            self.generator.truth.close({})
        assert counts.unconfirmed == 0 and counts.unexpected_rejects == 0
        return counts


async def verified(db: asyncpg.Connection, settings: Settings, path: Path) -> Report:
    truth = load_truth(path)
    await wait_drained(db, truth, settings, 60)
    report = await check(db, truth)
    assert report.ok, report.lines(truth.run)
    assert report.stored == truth.expected > 500
    return report


def through(settings: Settings, port: int) -> str:
    url = make_url(dsn(settings.database_url)).set(host="127.0.0.1", port=port)
    return url.render_as_string(hide_password=False)


@pytest.fixture
async def proxy(settings: Settings) -> AsyncIterator[Proxy]:
    url = make_url(dsn(settings.database_url))
    proxy = Proxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    yield proxy
    await proxy.close()


def asgi(app: FastAPI) -> httpx.AsyncClient:
    # As served: an exception in the app is a 500 the generator retries, not a crash.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


class Workers:
    """In-process workers as background tasks, stopped and closed on the way out."""

    def __init__(self, settings: Settings, redis: Redis, count: int = 1, **overrides: Any) -> None:
        self.settings = settings.model_copy(update={"claim_idle_ms": 500, **overrides})
        self.workers = [
            Worker(self.settings, redis, Database(self.settings), name=f"w{i}")
            for i in range(count)
        ]
        self.tasks = [asyncio.create_task(worker.run()) for worker in self.workers]

    async def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), timeout=30)
        for worker in self.workers:
            await worker.database.close()
        for task in self.tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]


async def test_a_worker_killed_mid_batch_and_another_at_random_lose_nothing(
    app: FastAPI,
    db: asyncpg.Connection,
    redis: Redis,
    settings: Settings,
    proxy: Proxy,
    tmp_path: Path,
) -> None:
    env = {
        "DATABASE_URL": through(settings, proxy.port),
        "REDIS_URL": settings.redis_url,
        "ALLOW_VOLATILE_QUEUE": "true",
        "BLOCK_MS": "100",
        "CLAIM_IDLE_MS": "500",
        "CLAIM_INTERVAL_S": "0.2",
    }
    async with Stack(tmp_path / "stack", env) as stack, asgi(app) as http:
        victim = stack.worker_child("victim")
        victim.start()
        load = Load(http, tmp_path / "truth.ndjson", seconds=4)
        await wait_for(lambda: _stored_any(db), 30)
        # Stall the database so the victim is surely holding a batch it has not committed.
        proxy.stall()

        async def victim_holds_a_batch() -> bool:
            summary: Any = await redis.xpending(settings.stream, settings.group)
            held = {c["name"]: int(c["pending"]) for c in summary["consumers"]}
            return held.get(b"victim", 0) > 0

        await wait_for(victim_holds_a_batch, 20)
        victim.kill()
        proxy.resume()
        rescuer = stack.worker_child("rescuer")
        rescuer.start()
        await load.confirmed(load.counts.confirmed + 300)
        # Once more at no particular moment; it comes back under the same name.
        rescuer.kill()
        rescuer.start()
        counts = await load.finish()
        await verified(db, settings, load.path)
    assert counts.duplicate > 0 and victim.starts == 1 and rescuer.starts == 2


async def _stored_any(db: asyncpg.Connection) -> bool:
    return bool(await db.fetchval("SELECT exists (SELECT 1 FROM events)"))


async def test_a_database_brownout_through_the_proxy_loses_nothing(
    app: FastAPI,
    db: asyncpg.Connection,
    redis: Redis,
    settings: Settings,
    proxy: Proxy,
    tmp_path: Path,
) -> None:
    # A statement timeout shorter than the stall: commits time out on the client side,
    # whether or not the server committed, and the batch is retried.
    workers = Workers(
        settings,
        redis,
        count=2,
        database_url=through(settings, proxy.port),
        statement_timeout_ms=800,
    )
    try:
        async with asgi(app) as http:
            load = Load(http, tmp_path / "truth.ndjson", seconds=4)
            await wait_for(lambda: _stored_any(db), 30)
            proxy.delay(0.2)
            await load.confirmed(load.counts.confirmed + 100)
            proxy.resume()
            proxy.stall()
            await asyncio.sleep(1.5)  # the fault's length, not a wait for work
            proxy.resume()
            proxy.drop()
            proxy.refuse()
            await load.confirmed(load.counts.confirmed + 100)
            proxy.resume()
            await load.finish()
            await verified(db, settings, load.path)
    finally:
        await workers.stop()
    assert proxy.stats.dropped > 0 and proxy.stats.connections > 2


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
async def test_a_redis_restart_with_aof_loses_nothing(
    db: asyncpg.Connection, settings: Settings, tmp_path: Path
) -> None:
    async with Stack(tmp_path / "stack", {}) as stack:
        server = stack.redis_child()
        await stack.start_redis(server)
        private = settings.model_copy(
            update={"redis_url": f"redis://127.0.0.1:{server.port}/0", "retry_after_s": 1}
        )
        app = create_app(private)
        redis = Redis.from_url(private.redis_url)
        workers = Workers(private, redis)
        try:
            async with app.router.lifespan_context(app), asgi(app) as http:
                load = Load(http, tmp_path / "truth.ndjson", seconds=4)
                await load.confirmed(300)
                assert await server.stop() == 0  # SHUTDOWN: the AOF is fsynced on the way out

                async def refused() -> bool:
                    return load.counts.retried_503 > 0

                await wait_for(refused, 20)
                await stack.start_redis(server)
                counts = await load.finish()
            await verified(db, private, load.path)
        finally:
            await workers.stop()
            await redis.aclose()
    assert counts.retried_503 > 0 and server.starts == 2


async def test_an_api_killed_and_restarted_loses_nothing(
    db: asyncpg.Connection, redis: Redis, settings: Settings, tmp_path: Path
) -> None:
    env = {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "ALLOW_VOLATILE_QUEUE": "true",
    }
    async with Stack(tmp_path / "stack", env) as stack:
        api = stack.api_child()
        await stack.start_http(api)
        workers = Workers(settings, redis)
        try:
            http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{api.port}", timeout=10)
            async with http:
                load = Load(http, tmp_path / "truth.ndjson", seconds=4)
                await load.confirmed(300)
                api.kill()

                async def noticed() -> bool:
                    return load.counts.errors > 0

                await wait_for(noticed, 20)
                await stack.start_http(api)
                counts = await load.finish()
            await verified(db, settings, load.path)
        finally:
            await workers.stop()
    assert counts.errors > 0 and api.starts == 2
