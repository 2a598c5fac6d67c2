"""A target's history as a regular series, read through the read API's own rollup code.

app.reads.aggregates picks the rollup level by the step (1-minute buckets for a 1-minute
step, hours for an hourly one) and answers with count, sum, avg, min and max per cell; the
series takes each cell's average, regularised onto the step grid with forecast.series.
"""

import asyncpg

from app.core.timeparse import MAX_US, MIN_US
from app.reads.aggregates import Selection, metric_buckets, metric_totals
from forecast.queries import Target
from forecast.series import Series, regularise


async def load(
    conn: asyncpg.Connection, target: Target, lo_us: int, hi_us: int, step_s: int
) -> Series:
    """The cells of [lo_us, hi_us) at step_s, NaN where the rollups hold nothing."""
    selection = Selection(target.tenant, target.scope, target.key, lo_us, hi_us)
    cells = -(-(hi_us - lo_us) // (step_s * 1_000_000))
    buckets = await metric_buckets(
        conn, selection, target.metric, interval_s=step_s, limit=cells + 1
    )
    points = [(bucket.start_us, bucket.avg) for bucket in buckets]
    return regularise(points, step_s=step_s, lo_us=lo_us, hi_us=hi_us)


async def readings(conn: asyncpg.Connection, target: Target) -> int:
    """How many readings of the metric the device (or site) has, at any time: tells a
    sensor that never sent the metric from one with too little of it in a window."""
    selection = Selection(target.tenant, target.scope, target.key, MIN_US, MAX_US)
    totals = await metric_totals(conn, selection, [target.metric])
    bucket = totals.get(target.metric)
    return bucket.count if bucket is not None else 0
