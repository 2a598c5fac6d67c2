"""Reads from a streaming replica (READ_DATABASE_URL), and from the primary when it cannot serve.

`ReadPool` holds the primary pool and, when READ_DATABASE_URL is set, a second pool on the
replica. A monitor task samples the replica's replay lag every READ_REPLICA_SAMPLE_S:

- lag = now() - pg_last_xact_replay_timestamp() while the replica is behind what it has
  received; 0 when it has replayed everything it received and its WAL receiver streams
  (an idle primary sends nothing, so the last replay can be hours old on a replica that
  lacks nothing); 0 on a server not in recovery. Every commit older than that timestamp
  is replayed, so the lag bounds what an answer read there may lack.
- Between samples the lag is the last one plus the sample's age (it grows by at most a
  second a second), so an answer's `staleness_bound_s` is widened by an honest figure and
  its `as_of` moved back by it.

Reads go to the primary while the replica does not answer (the probe, or a read: refused,
reset, timed out, shutting down) or lags past READ_REPLICA_MAX_LAG_S, and come back when
a probe finds the lag under half the bound; an unreachable replica is probed every
READ_REPLICA_RECHECK_S. Each move is logged once and counted. A read whose replica
connection fails mid-query is run once more on the primary (`run`, `ReplicaFallbackRoute`),
so a replica going away costs a retry, never an error answer.
"""

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import asyncpg
from fastapi import Request, Response
from fastapi.routing import APIRoute

from app.core.database import close_pool, create_pool
from app.core.errors import database_unavailable
from app.core.metrics import REPLICA_FALLBACKS, REPLICA_IN_USE, REPLICA_LAG
from app.core.settings import Settings

log = logging.getLogger("app.replica")

T = TypeVar("T")
SourceName = Literal["primary", "replica"]

LAG = """
SELECT pg_is_in_recovery() AS standby,
    coalesce(pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn(), false) AS caught_up,
    EXISTS (SELECT FROM pg_stat_wal_receiver WHERE coalesce(status, 'streaming') = 'streaming')
        AS streaming,
    extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8 AS behind_s
"""


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of the replica's replay position (the LAG query)."""

    standby: bool
    caught_up: bool
    streaming: bool
    behind_s: float | None

    @property
    def lag_s(self) -> float | None:
        """Seconds of commits the replica may lack; None when it cannot tell."""
        if not self.standby:
            return 0.0  # a primary, or a promoted replica: it lacks nothing
        if self.caught_up and self.streaming:
            return 0.0  # all it received is replayed and it is receiving: an idle primary
        if self.behind_s is None:
            return None  # behind, and nothing replayed since it started
        return max(0.0, self.behind_s)


async def sample(conn: asyncpg.Connection) -> Sample:
    row = await conn.fetchrow(LAG)
    assert row is not None
    return Sample(row["standby"], row["caught_up"], row["streaming"], row["behind_s"])


@dataclass(frozen=True, slots=True)
class Source:
    """Where one read goes, and how far behind the primary its answer may be."""

    name: SourceName
    pool: asyncpg.Pool
    lag_s: float


def retry_on_primary(error: BaseException) -> bool:
    """A replica read failed for a reason the primary does not share: no connection, a
    shutdown, a recovery conflict. A statement timeout is the query's own cost: not retried."""
    return database_unavailable(error) and getattr(error, "sqlstate", None) != "57014"


def _conflict(error: BaseException) -> bool:
    """A query cancelled by a conflict with recovery (40001): the replica itself is fine."""
    return str(getattr(error, "sqlstate", None) or "").startswith("40")


class ReadPool:
    """The primary pool and, when configured, the replica's: which one a read uses."""

    def __init__(
        self,
        primary: asyncpg.Pool,
        replica: asyncpg.Pool | None = None,
        *,
        max_lag_s: float = 30.0,
        sample_s: float = 1.0,
        recheck_s: float = 5.0,
        timeout_s: float = 2.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.replica = replica
        self.max_lag_s = max_lag_s
        self.sample_s = sample_s
        self.recheck_s = recheck_s
        self.timeout_s = timeout_s
        self._timer = timer
        # The last finite lag and when its probe started; None until a probe succeeds.
        self._lag_s: float | None = None
        self._sampled_at: float | None = None
        self.reads: SourceName = "primary"  # until a probe vouches for the replica
        self.detail = "not sampled yet" if replica is not None else "not configured"
        self._told = False
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def configured(self) -> bool:
        return self.replica is not None

    def lag_s(self) -> float:
        """The replica's lag now, at most: the last sample plus its age; 0 before any (no
        read has gone to the replica then)."""
        if self._lag_s is None or self._sampled_at is None:
            return 0.0
        return self._lag_s + max(0.0, self._timer() - self._sampled_at)

    def choose(self, *, primary_only: bool = False) -> Source:
        if self.replica is None or primary_only or self.reads != "replica":
            return Source("primary", self.primary, 0.0)
        lag = self.lag_s()
        if lag > self.max_lag_s:
            # The monitor is late (a probe hanging up to its timeout, a stalled loop).
            self._to_primary("lag", f"no lag sample for {lag:.1f} s")
            return Source("primary", self.primary, 0.0)
        return Source("replica", self.replica, lag)

    def _to_primary(self, reason: Literal["unreachable", "lag"], detail: str) -> None:
        self.detail = detail
        if self.reads == "replica":
            REPLICA_FALLBACKS.labels(reason).inc()
        if self.reads == "replica" or not self._told:
            # Once per move, and once at start when the replica cannot serve from the outset.
            log.warning("reads go to the primary: %s", detail)
        self._told = True
        self.reads = "primary"
        REPLICA_IN_USE.set(0)

    def _to_replica(self, lag_s: float) -> None:
        self.detail = "ok"
        if self.reads == "replica":
            return
        self.reads, self._told = "replica", True
        REPLICA_IN_USE.set(1)
        log.info("reads go to the replica (lag %.3f s)", lag_s)

    def lost(self, error: BaseException) -> None:
        """A read on the replica found no usable connection: the primary serves until the
        monitor finds the replica back."""
        self._to_primary("unreachable", f"a replica read failed: {type(error).__name__}: {error}")

    def failed(self, error: BaseException) -> bool:
        """Whether a replica read that raised `error` should run again on the primary (and
        note the replica lost, unless it was a recovery conflict)."""
        if not retry_on_primary(error):
            return False
        if not _conflict(error):
            self.lost(error)
        return True

    async def check(self) -> bool:
        """One probe of the replica; moves reads as it finds. False when it did not answer."""
        assert self.replica is not None
        started = self._timer()
        try:
            async with self.replica.acquire(timeout=self.timeout_s) as conn:
                async with asyncio.timeout(self.timeout_s):
                    found = await sample(conn)
        except Exception as error:
            REPLICA_LAG.set(math.nan)
            if not database_unavailable(error):
                log.exception("replica lag probe failed")
            self._to_primary("unreachable", f"replica unreachable: {type(error).__name__}")
            return False
        lag = found.lag_s
        if lag is None:
            REPLICA_LAG.set(math.nan)
            self._to_primary("lag", "replica is behind and has replayed nothing since it started")
            return True
        self._lag_s, self._sampled_at = lag, started
        REPLICA_LAG.set(lag)
        if lag > self.max_lag_s:
            self._to_primary(
                "lag", f"replica lag {lag:.1f} s is over READ_REPLICA_MAX_LAG_S={self.max_lag_s}"
            )
        elif self.reads == "replica" or lag <= self.max_lag_s / 2:
            self._to_replica(lag)
        return True

    async def _monitor(self) -> None:
        while not self._stop.is_set():
            answered = await self.check()
            with suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stop.wait(), self.sample_s if answered else self.recheck_s
                )

    def start(self) -> None:
        if self.replica is not None and self._task is None:
            self._task = asyncio.create_task(self._monitor(), name="replica-lag")

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self.replica is not None:
            await close_pool(self.replica)

    def status(self) -> dict[str, Any]:
        """For /readyz: where reads go, the replica's lag and why."""
        if self.replica is None:
            return {"configured": False, "reads": "primary"}
        sampled = self._sampled_at
        return {
            "configured": True,
            "reads": self.reads,
            "lag_s": round(self._lag_s, 3) if self._lag_s is not None else None,
            "sampled_s_ago": round(self._timer() - sampled, 3) if sampled is not None else None,
            "max_lag_s": self.max_lag_s,
            "detail": self.detail,
        }

    @asynccontextmanager
    async def connection(self, source: Source) -> AsyncIterator[tuple[asyncpg.Connection, Source]]:
        """A connection of the source's pool, or the primary's when the replica gives none."""
        conn: asyncpg.Connection | None = None
        if source.name == "replica":
            try:
                conn = await source.pool.acquire(timeout=self.timeout_s)
            except Exception as error:
                if not retry_on_primary(error):
                    raise
                self.lost(error)
                source = Source("primary", self.primary, 0.0)
        if conn is None:
            conn = await self.primary.acquire()
        try:
            yield conn, source
        finally:
            await source.pool.release(conn)

    async def run(self, read: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """read(conn) where reads go now; once more on the primary when the replica fails it."""
        used = self.choose()
        try:
            async with self.connection(used) as (conn, used):
                return await read(conn)
        except Exception as error:
            if used.name != "replica" or not self.failed(error):
                raise
        async with self.primary.acquire() as conn:
            return await read(conn)


async def create_read_pool(
    settings: Settings, primary: asyncpg.Pool, *, application_name: str
) -> ReadPool:
    """The read pool of a process: the primary's alone, or with a lazy pool on the replica."""
    replica = None
    if settings.read_database_url:
        replica = await create_pool(
            settings,
            url=settings.read_database_url,
            application_name=f"{application_name}-read",
            connect_timeout_s=settings.read_replica_timeout_s,
        )
    return ReadPool(
        primary,
        replica,
        max_lag_s=settings.read_replica_max_lag_s,
        sample_s=settings.read_replica_sample_s,
        recheck_s=settings.read_replica_recheck_s,
        timeout_s=settings.read_replica_timeout_s,
    )


class ReplicaFallbackRoute(APIRoute):
    """A read route that runs once more on the primary when its replica connection fails
    mid-read (the read connection dependency notes which pool it lent)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as error:
                reads: ReadPool | None = getattr(request.app.state, "read_pool", None)
                on_replica = getattr(request.state, "read_on_replica", False)
                if reads is None or not on_replica or not reads.failed(error):
                    raise
            request.state.read_primary_only = True
            return await handler(request)

        return run
