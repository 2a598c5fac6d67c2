"""Alerts on Redis Cluster: each shard's devices move their states and notify in their
shard's slot, in one script call; history is written from the shards' alert streams."""

import uuid
from typing import Any

import asyncpg
import httpx
import orjson
from fastapi import FastAPI
from redis.asyncio.cluster import RedisCluster

from app.core.redis import as_redis
from app.core.settings import Settings
from app.core.shards import assigned, route, shard
from app.main import create_app
from tests.fixtures.cluster import SHARDS, devices_on_every_shard
from tests.helpers import event, post_batch
from workers.alerts import Alerts
from workers.shards import ShardedWorker


async def test_transitions_go_to_each_devices_shard_and_into_history(
    cluster_settings: Settings, cluster_client: RedisCluster, db: asyncpg.Connection
) -> None:
    tag = uuid.uuid4().hex[:8]
    settings = cluster_settings.model_copy(
        update={
            "alert_rules_channel": f"test:{tag}:rules",
            "alert_channel": f"test:{tag}:alerts",
            "alert_rule_sync_s": 3600.0,
        }
    )
    application: FastAPI = create_app(settings)
    devices = devices_on_every_shard()[:3]
    alerts = Alerts(settings, as_redis(cluster_client), name="a1", shards=assigned(settings))
    try:
        async with (
            application.router.lifespan_context(application),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=application), base_url="http://t"
            ) as api,
        ):
            created = await api.post(
                "/v1/alerts", json={"metric": "temp", "op": ">", "threshold": 32}
            )
            assert created.status_code == 201, created.text
            await alerts.sync()
            await post_batch(
                api, [event(f"e{n}", device=d, minute=1, temp=40.0) for n, d in enumerate(devices)]
            )
            worker = ShardedWorker(
                settings,
                as_redis(cluster_client),
                assigned(settings),
                name="w1",
                burst=True,
                after_commit=alerts.evaluator,
            )
            try:
                await worker.run()
            finally:
                await worker.close()
            for device in devices:
                own = shard(settings, route("default", device, SHARDS))
                entries: Any = await cluster_client.xrange(own.alert_stream)
                payloads = [orjson.loads(fields[b"d"]) for _, fields in entries]
                assert [(p["device_id"], p["state"]) for p in payloads] == [(device, "firing")]
            assert await cluster_client.exists(settings.alert_stream) == 0
            # Shards' streams make the same ids in the same millisecond: history keeps them apart.
            for one in assigned(settings)[3:5]:  # shards with no alert yet
                await cluster_client.xadd(one.alert_stream, entries[0][1], id="1-1")
            recorded = [await alerts.record_history() for _ in range(3)]
            assert recorded == [len(devices) + 2, 0, 0]
            ids = [r["alert_id"] for r in await db.fetch("SELECT alert_id FROM alert_history")]
            assert len(ids) == len(devices) + 2 and {"1-1.s3", "1-1.s4"} <= set(ids)
    finally:
        await alerts.database.close()
