"""The one retry and reconnect policy: exponential backoff with jitter, bounded, on tenacity.

Every loop that waits out a fault (the worker's writes, its Redis reads, the rule and
history followers, the SSE fan-out's subscription, the refresher) goes through
`retrying`; none sleeps and retries by hand. A stop event turns a backoff wait into
`Stopped`, so a process asked to stop does not sit out its backoff first.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_never,
    wait_exponential_jitter,
)

log = logging.getLogger("app.retry")


def redis_fault(error: BaseException) -> bool:
    """A lost or refused Redis connection: worth waiting out and reconnecting."""
    return isinstance(error, (RedisError, OSError))


class Stopped(Exception):
    """Raised out of a backoff wait when the process is asked to stop."""


def _sleeper(stop: asyncio.Event | None) -> Callable[[float], Awaitable[None]]:
    async def sleep(seconds: float) -> None:
        if stop is None:
            await asyncio.sleep(seconds)
            return
        try:
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        except TimeoutError:
            return
        raise Stopped

    return sleep


def retrying(
    label: str,
    *,
    on: Callable[[BaseException], bool],
    initial_s: float = 0.1,
    max_s: float = 5.0,
    attempts: int | None = None,
    stop: asyncio.Event | None = None,
    on_retry: Callable[[BaseException], Awaitable[None]] | None = None,
) -> AsyncRetrying:
    """Attempts of one operation: `async for attempt in retrying(...): with attempt: ...`.

    Errors for which `on` is true are retried after initial_s, 2x, 4x ... up to max_s, each
    plus up to as much again of jitter so a fleet does not retry in step; any other error,
    or the last of `attempts`, is raised as it is. `on_retry` runs before each wait (to
    drop a broken connection, count the fault).
    """

    async def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.upcoming_sleep
        log.warning("%s: %r; retry %d in %.2f s", label, error, state.attempt_number, wait)
        if on_retry is not None and error is not None:
            await on_retry(error)

    def retryable(error: BaseException) -> bool:
        # A stop request is never a fault to wait out, whatever `on` says.
        return not isinstance(error, Stopped) and on(error)

    return AsyncRetrying(
        retry=retry_if_exception(retryable),
        wait=wait_exponential_jitter(multiplier=initial_s, max=max_s, jitter=initial_s),
        stop=stop_never if attempts is None else stop_after_attempt(attempts),
        sleep=_sleeper(stop),
        before_sleep=before_sleep,
        reraise=True,
    )


def healthy(state: RetryCallState) -> None:
    """Call inside a long-lived attempt once it works: the next fault backs off afresh."""
    state.attempt_number = 1
