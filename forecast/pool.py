"""Training off the event loop: a small process pool, its processes warmed at start-up.

Processes are started with spawn (or forkserver), never fork: the parent holds an event
loop, asyncpg and Redis connections, and threads that a forked child would inherit in
whatever state they were in. Each process runs forecast.jobs.initialize (warm_up) before
its first job, and the pool is sent one job per process at start, so the first-use cost is
paid before the first training and reported (`warm_up_s`).
"""

import asyncio
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from app.core.errors import Backpressure, Unavailable
from forecast import jobs
from forecast.metrics import TRAININGS, WARM_UP_SECONDS

log = logging.getLogger("forecast.pool")

T = TypeVar("T")


class TrainingPool:
    def __init__(self, workers: int, context: str, *, max_queued: int) -> None:
        self.workers = workers
        self.context = context
        self.max_queued = max_queued
        self.running = 0
        self.warm_up_s: list[float] | None = None
        self.warm_up_error: str | None = None
        self._executor: ProcessPoolExecutor | None = None
        self._warming: asyncio.Future[list[float]] | None = None

    def start(self) -> None:
        self._executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context(self.context),
            initializer=jobs.initialize,
        )
        loop = asyncio.get_running_loop()
        # One job per process makes the executor start them all now, each warming up first.
        self._warming = asyncio.gather(
            *(loop.run_in_executor(self._executor, jobs.warmed) for _ in range(self.workers))
        )
        self._warming.add_done_callback(self._warmed)

    def _warmed(self, future: "asyncio.Future[list[float]]") -> None:
        # A replaced pool's warm-up reports nothing about the pool serving now.
        if future.cancelled() or future is not self._warming:
            return
        error = future.exception()
        if error is not None:
            self.warm_up_error = f"{type(error).__name__}: {error}"
            log.error("training pool warm-up failed: %s", self.warm_up_error)
            return
        self.warm_up_s = future.result()
        WARM_UP_SECONDS.labels("pool").set(max(self.warm_up_s))
        log.info(
            "training pool warm: %s s per process", ", ".join(f"{s:.2f}" for s in self.warm_up_s)
        )

    async def wait_warm(self) -> list[float]:
        assert self._warming is not None, "start() first"
        return await asyncio.shield(self._warming)

    @property
    def warm(self) -> bool:
        return self.warm_up_s is not None

    async def run(self, job: Callable[..., T], *args: Any) -> T:
        """Run a job in a pool process; the event loop keeps serving meanwhile."""
        assert self._executor is not None, "start() first"
        if self.running >= self.workers + self.max_queued:
            raise Backpressure(
                f"{self.running} trainings are running or queued; retry later",
                headers={"Retry-After": "5"},
            )
        self.running += 1
        TRAININGS.inc()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, job, *args)
        except BrokenProcessPool:
            # A process died (killed, out of memory): every job in the pool fails with it.
            # A fresh pool serves the next request; this one is told to retry.
            log.error("a training process died; starting a new pool")
            self._replace()
            raise Unavailable(
                "the training process died; retry", headers={"Retry-After": "5"}
            ) from None
        finally:
            self.running -= 1
            TRAININGS.dec()

    def _replace(self) -> None:
        old = self._executor
        self.warm_up_s, self.warm_up_error = None, None
        self.start()
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            # shutdown(wait=True) blocks until the processes exit: not on the event loop.
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
