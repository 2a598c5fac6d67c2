"""`python -m workers [--burst] [--name NAME]`: run one consumer-group worker."""

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid

import uvloop
from prometheus_client import start_http_server
from redis.exceptions import RedisError

from app.core.durability import probe, probe_masters
from app.core.redis import Primaries, as_redis, create_cluster, create_redis, initialize
from app.core.settings import get_settings
from app.core.shards import assigned
from workers.alerts import Alerts
from workers.consumer import Worker
from workers.database import Database
from workers.refresher import Refresher
from workers.shards import ShardedWorker


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def main(burst: bool, name: str, metrics_port: int) -> None:
    settings = get_settings()
    if metrics_port:
        start_http_server(metrics_port, addr="127.0.0.1")
    cluster = create_cluster(settings) if settings.redis_cluster_url else None
    if cluster is not None:
        await initialize(cluster)
    redis = as_redis(cluster) if cluster is not None else create_redis(settings)
    primaries = Primaries(cluster) if cluster is not None else None
    replicated = settings.required_durability == "replicated"
    with contextlib.suppress(RedisError, OSError):
        if primaries is not None:
            found = await probe_masters(await primaries.masters(), replicated=replicated)
        else:
            found = await probe(redis, replicated=replicated)
        refusal = found.refusal(settings.required_durability)
        logging.getLogger("workers").log(
            logging.WARNING if refusal else logging.INFO,
            "queue durability: %s (%s)%s",
            found.level,
            found.reason,
            f"; {refusal}" if refusal else "",
        )
    database = Database(settings)
    worker: Worker | ShardedWorker
    if cluster is not None:
        # Every shard, or WORKER_SHARDS: one consumer loop per shard in this process.
        shards = assigned(settings)
        alerts = Alerts(settings, redis, name=name, shards=shards)
        worker = ShardedWorker(
            settings, redis, shards, name=name, burst=burst, after_commit=alerts.evaluator
        )
        logging.getLogger("workers").info(
            "worker %s consumes shards %s", name, ",".join(s.label for s in shards)
        )
    else:
        alerts = Alerts(settings, redis, name=name)
        worker = Worker(
            settings, redis, database, name=name, burst=burst, after_commit=alerts.evaluate
        )
    # One refresher per fleet wins the advisory lock; the others only try it each round.
    refresher = Refresher(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # The batch in hand is finished and acknowledged; then the loop ends.
        loop.add_signal_handler(sig, worker.stop)
    try:
        async with alerts.running(), refresher.running(active=not burst):
            await worker.run()
    finally:
        await database.close()
        if isinstance(worker, ShardedWorker):
            await worker.close()
        if primaries is not None:
            await primaries.aclose()
        await redis.aclose()
    logging.getLogger("workers").info("worker %s stopped after %d events", name, worker.stored)


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__)
    parser.add_argument("--burst", action="store_true", help="drain the stream, then exit")
    parser.add_argument("--name", default=default_name(), help="consumer name in the group")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("WORKER_METRICS_PORT", "0")),
        help="serve Prometheus metrics on this port (0: off)",
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    # uvloop: the worker's time goes to many small socket writes and reads (Redis, PostgreSQL).
    uvloop.run(main(args.burst, args.name, args.metrics_port))


if __name__ == "__main__":
    cli()
