"""A worker on Redis Cluster: one consumer loop per shard it is assigned, in one process.

Each shard's loop is the one-stream worker (workers/consumer.py) on that shard's stream:
the same group, XREADGROUP, XAUTOCLAIM, claim renewal, dead letters (the shard's own
dead-letter stream), trimming and consumer forgetting (per-shard scripts), under the same
consumer name, with its own database connection (one transaction at a time each) and its
own health key (`NAME/s<i>`). Stopping stops every loop; in burst mode the process ends
once every shard is drained, and a loop that fails ends the others.
"""

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis

from app.core.settings import Settings
from app.core.shards import Shard
from workers.consumer import AfterCommit, Worker
from workers.database import Database


class ShardedWorker:
    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        shards: Sequence[Shard],
        *,
        name: str,
        burst: bool = False,
        after_commit: Callable[[Shard], AfterCommit | None] | None = None,
        **options: Any,
    ) -> None:
        self.name = name
        self.workers = [
            Worker(
                settings,
                redis,
                Database(settings),
                name=name,
                burst=burst,
                after_commit=after_commit(shard) if after_commit else None,
                shard=shard,
                **options,
            )
            for shard in shards
        ]

    @property
    def stored(self) -> int:
        return sum(worker.stored for worker in self.workers)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    async def run(self) -> None:
        tasks = [
            asyncio.create_task(worker.run(), name=f"worker-{worker.label}")
            for worker in self.workers
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    self.stop()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for task in tasks:
                task.cancel()
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def close(self) -> None:
        for worker in self.workers:
            await worker.database.close()
