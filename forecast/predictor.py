"""Predictions from stored artifacts, in this process, in a thread off the event loop.

Measured (docs/forecast.md): a warm predict of 60 steps from a 1-minute artifact takes
~15 ms, against a round trip through the pool that would wait behind a training of
seconds; so predictions stay here, where the artifact is also at hand. A version never
changes, so its forecast for a number of steps is cached.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from cachetools import LRUCache

from forecast import models
from forecast.metrics import PREDICT_SECONDS, WARM_UP_SECONDS
from forecast.queries import Target

log = logging.getLogger("forecast.predictor")

CacheKey = tuple[Target, int, int]


class Predictor:
    def __init__(self, cache_size: int = 128) -> None:
        self._cache: LRUCache[CacheKey, models.Forecast] = LRUCache(cache_size)
        self.warm_up_s: float | None = None
        self.warm_up_error: str | None = None
        self._warming: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._warming = asyncio.create_task(self._warm_up(), name="predict-warm-up")

    async def _warm_up(self) -> None:
        try:
            self.warm_up_s = await asyncio.to_thread(models.warm_up)
        except Exception as error:
            self.warm_up_error = f"{type(error).__name__}: {error}"
            log.exception("in-process warm-up failed")
            return
        WARM_UP_SECONDS.labels("process").set(self.warm_up_s)
        log.info("predict warm in %.2f s", self.warm_up_s)

    @property
    def warm(self) -> bool:
        return self.warm_up_s is not None

    async def close(self) -> None:
        # A thread cannot be cancelled: let the warm-up finish rather than leak it.
        if self._warming is not None:
            await self._warming

    async def predict(
        self,
        target: Target,
        version: int,
        horizon_steps: int,
        artifact: Callable[[], Awaitable[bytes]],
    ) -> models.Forecast:
        """The forecast of one version; `artifact` loads the bytes on a cache miss."""
        key = (target, version, horizon_steps)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        data = await artifact()
        started = time.perf_counter()
        forecast = await asyncio.to_thread(models.predict, data, horizon_steps=horizon_steps)
        PREDICT_SECONDS.observe(time.perf_counter() - started)
        self._cache[key] = forecast
        return forecast
