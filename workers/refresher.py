"""The rollup refresher: one per fleet (a session advisory lock elects it), beside the workers.

Every round takes the oldest changed minutes (at most REFRESH_MAX_MINUTES) that are older
than REFRESH_LAG_S, rebuilds them and the hours and days they touch, and moves the 1-minute
watermark up to the next minute still waiting (or to now minus the lag). A coarser bucket
is rebuilt when a change lands in it below the watermark, and once when the watermark
crosses its end; until then the views read it from the finer level. Ranges rebuilt below
the old watermark (late data) are logged so API caches evict the answers they overlap.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from app.core.metrics import REFRESH_SECONDS, ROLLUP_QUARANTINED, WATERMARK_LAG
from app.core.settings import Settings
from app.core.timeparse import US, to_datetime, to_us
from workers import rollups
from workers.database import Database, is_data_error, is_transient

log = logging.getLogger("workers.refresher")

Span = tuple[datetime, datetime]


def floor(moment: datetime, seconds: int) -> datetime:
    width = seconds * US
    return to_datetime(to_us(moment) // width * width)


def runs(buckets: Sequence[datetime], seconds: int, max_seconds: int) -> list[Span]:
    """Adjacent buckets merged into [lo, hi) windows of at most max_seconds (and one bucket)."""
    width = timedelta(seconds=seconds)
    longest = max(width, timedelta(seconds=max_seconds // seconds * seconds))
    spans: list[Span] = []
    for bucket in sorted(set(buckets)):
        if spans and spans[-1][1] == bucket and bucket + width - spans[-1][0] <= longest:
            spans[-1] = (spans[-1][0], bucket + width)
        else:
            spans.append((bucket, bucket + width))
    return spans


def crossed(
    minutes: Sequence[datetime], old: datetime | None, new: datetime, seconds: int
) -> list[datetime]:
    """Buckets of one coarser width to rebuild: those the changed minutes fall in, and the
    one the watermark leaves; only whole buckets below the new watermark."""
    buckets = {floor(minute, seconds) for minute in minutes}
    if old is not None:
        buckets.add(floor(old, seconds))
    limit = floor(new, seconds)
    return sorted(bucket for bucket in buckets if bucket < limit)


@dataclass
class Round:
    led: bool
    minutes: int = 0
    watermark: datetime | None = None
    late: list[Span] = field(default_factory=list)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Refresher:
    def __init__(
        self,
        settings: Settings,
        *,
        database: Database | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.database = database or Database(settings, application_name="telemetry-refresher")
        self.clock = clock
        self.leading = False
        self._conn: asyncpg.Connection | None = None
        self._plain = True
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Refresh every REFRESH_INTERVAL_S until stopped; faults are logged and retried."""
        while not self._stopping.is_set():
            try:
                await self.round()
            except Exception as error:
                if is_transient(error):
                    log.warning("database fault in the refresher (%r); retrying", error)
                    await self.database.reset()
                else:
                    log.exception("refresher round failed; retrying")
            with suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stopping.wait(), timeout=self.settings.refresh_interval_s
                )

    async def close(self) -> None:
        await self.database.close()

    @asynccontextmanager
    async def running(self, active: bool = True) -> AsyncIterator[None]:
        """Refresh in the background for the block (unless inactive or disabled)."""
        if not (active and self.settings.refresh_enabled):
            yield
            return
        task = asyncio.create_task(self.run(), name="rollup-refresher")
        try:
            yield
        finally:
            self.stop()
            await task
            await self.close()

    async def _connect(self) -> asyncpg.Connection:
        conn = await self.database.connection()
        if conn is not self._conn:
            # A new session holds no lock: leadership is won again.
            self._conn = conn
            self.leading = False
            self._plain = await rollups.is_plain(conn)
            await rollups.tune(conn)
        return conn

    # Isolation: one piece the database refuses to aggregate must not stop every round of
    # every tenant (the oldest minutes go first, so it would be retried forever). The
    # failing piece is narrowed down, recorded in rollup_quarantine, counted and logged;
    # the rest is built and the watermark moves on.

    async def _rebuild_minutes(self, conn: asyncpg.Connection, minutes: list[datetime]) -> None:
        try:
            async with conn.transaction():
                await rollups.rebuild_minutes(conn, minutes)
            return
        except Exception as error:
            if not is_data_error(error):
                raise
            if len(minutes) == 1:
                await self._quarantine(conn, minutes[0], whole_bucket=False, error=error)
                try:
                    async with conn.transaction():
                        await rollups.rebuild_minutes(conn, minutes)
                except Exception as again:
                    if not is_data_error(again):
                        raise
                    log.error("minute %s cannot be rolled up (%r); skipped", minutes[0], again)
                return
        middle = len(minutes) // 2
        await self._rebuild_minutes(conn, minutes[:middle])
        await self._rebuild_minutes(conn, minutes[middle:])

    async def _rebuild_coarse(
        self, conn: asyncpg.Connection, relation: str, column: str, buckets: list[datetime]
    ) -> None:
        try:
            async with conn.transaction():
                await rollups.rebuild_coarse(conn, relation, column, buckets)
            return
        except Exception as error:
            if not is_data_error(error):
                raise
            if len(buckets) == 1:
                ROLLUP_QUARANTINED.inc()
                log.error("%s %s cannot be rolled up (%r); skipped", relation, buckets[0], error)
                return
        middle = len(buckets) // 2
        await self._rebuild_coarse(conn, relation, column, buckets[:middle])
        await self._rebuild_coarse(conn, relation, column, buckets[middle:])

    async def _refresh_isolating(
        self, conn: asyncpg.Connection, relation: str, lo: datetime, hi: datetime, seconds: int
    ) -> None:
        try:
            await rollups.refresh_aggregate(conn, relation, lo, hi)
            return
        except Exception as error:
            if not is_data_error(error):
                raise
            buckets = int((hi - lo).total_seconds()) // seconds
            if buckets <= 1:
                if relation == "readings_1m":
                    # A continuous aggregate refreshes whole buckets: the minute stays
                    # unrefreshed for every series, so it is flagged as a whole.
                    await self._quarantine(conn, lo, whole_bucket=True, error=error)
                else:
                    ROLLUP_QUARANTINED.inc()
                    log.error("%s %s cannot be refreshed (%r); skipped", relation, lo, error)
                return
        middle = lo + timedelta(seconds=buckets // 2 * seconds)
        await self._refresh_isolating(conn, relation, lo, middle, seconds)
        await self._refresh_isolating(conn, relation, middle, hi, seconds)

    async def _quarantine(
        self, conn: asyncpg.Connection, minute: datetime, *, whole_bucket: bool, error: Exception
    ) -> None:
        """Find the series of the minute the database refuses, and record each."""
        found = 0
        for series in await rollups.series_in_minute(conn, minute):
            try:
                async with conn.transaction():
                    await rollups.probe(conn, minute, series)
            except Exception as refused:
                if not is_data_error(refused):
                    raise
                await rollups.quarantine(
                    conn, minute, series, whole_bucket=whole_bucket, error=repr(refused)
                )
                ROLLUP_QUARANTINED.inc()
                found += 1
                log.error(
                    "rollup quarantined: tenant %r device %r metric %r minute %s (%r)",
                    series.tenant,
                    series.device,
                    series.metric,
                    minute.isoformat(),
                    refused,
                )
        if not found:
            log.error("minute %s cannot be rolled up, no single series fails (%r)", minute, error)

    async def round(self) -> Round:
        """One round, if this process leads (else it tries to, and returns)."""
        conn = await self._connect()
        if not self.leading:
            self.leading = await rollups.try_lead(conn)
            if not self.leading:
                return Round(led=False)
        started = time.perf_counter()
        settings = self.settings
        target = floor(self.clock() - timedelta(seconds=settings.refresh_lag_s), 60)
        minutes, following = await rollups.dirty_minutes(conn, target, settings.refresh_max_minutes)
        old = await rollups.watermark(conn)
        new = following or target
        if old is not None:
            new = max(old, new)
        hours = crossed(minutes, old, new, 3600)
        days = crossed(minutes, old, new, 86400)
        window_s = settings.refresh_window_minutes * 60
        late = runs([m for m in minutes if old is not None and m < old], 60, window_s)
        if self._plain:
            async with conn.transaction():
                await rollups.forget_minutes(conn, minutes)
                await rollups.release(conn, minutes)
                await self._rebuild_minutes(conn, minutes)
                for relation, column, _, _ in rollups.COARSE:
                    buckets = hours if column == "hour" else days
                    await self._rebuild_coarse(conn, relation, column, buckets)
                await rollups.finish_round(conn, new, late, settings.refresh_log_keep_s)
        else:
            ids = await rollups.dirty_ids(conn, minutes)
            # Finer levels first: a hierarchical aggregate reads its parent's materialisation.
            for relation, buckets, seconds in (
                ("readings_1m", minutes, 60),
                ("site_readings_1m", minutes, 60),
                ("readings_1h", hours, 3600),
                ("site_readings_1h", hours, 3600),
                ("readings_1d", days, 86400),
                ("site_readings_1d", days, 86400),
            ):
                for lo, hi in runs(buckets, seconds, window_s):
                    await self._refresh_isolating(conn, relation, lo, hi, seconds)
            async with conn.transaction():
                await rollups.forget_ids(conn, ids)
                await rollups.finish_round(conn, new, late, settings.refresh_log_keep_s)
        REFRESH_SECONDS.observe(time.perf_counter() - started)
        WATERMARK_LAG.set((self.clock() - new).total_seconds())
        if late:
            log.info("refreshed %d late range(s) from %s", len(late), late[0][0])
        return Round(led=True, minutes=len(minutes), watermark=new, late=late)
