"""Aggregate answers: bounded, checked against the invariants, shaped, served via the cache.

Each answer carries `as_of` (when it was computed, moved back by the replica's lag when read
there) and `staleness_bound_s` (every reading committed longer ago than that is reflected in
it, widened by that lag); see ENGINEERING_NOTES.md and docs/reads.md.
"""

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import orjson
from fastapi import Response

from app.core.errors import InvalidInput
from app.core.metrics import WATERMARK_LAG
from app.core.settings import Settings
from app.core.timeparse import US, iso, to_datetime
from app.reads import aggregates
from app.reads.aggregates import Bucket, Selection, Window
from app.reads.cache import Entry, Key, ReadCache, check_buckets, check_windows

T = TypeVar("T")
Compute = Callable[[asyncpg.Connection], Awaitable[dict[str, Any]]]


def _bounded(items: list[T], limit: int, noun: str, field: str) -> list[T]:
    """The items, or an InvalidInput naming `field` when the query found more than `limit`."""
    if len(items) > limit:
        raise InvalidInput(
            f"the range holds more than {limit} {noun} with data; "
            f"use a longer {field} or a shorter range",
            field=field,
        )
    return items


def _span(selection: Selection) -> dict[str, str]:
    return {"from": iso(selection.lo_us), "to": iso(selection.hi_us)}


def _bucket(b: Bucket) -> dict[str, Any]:
    return {
        "start": to_datetime(b.start_us),
        "end": to_datetime(b.end_us),
        "count": b.count,
        "sum": b.sum,
        "avg": b.avg,
        "min": b.min,
        "max": b.max,
    }


async def _incomplete(
    conn: asyncpg.Connection, selection: Selection, metrics: list[str]
) -> dict[str, Any]:
    """`quarantined`, when rollup pieces inside the answer could not be built (see
    workers/refresher.py): the answer is then missing those readings, and says which."""
    found = await aggregates.quarantined(conn, selection, metrics)
    if not found:
        return {}
    return {
        "quarantined": [
            {
                "minute": iso(q.minute_us),
                "device_id": q.device_id,
                "metric": q.metric,
                "whole_minute": q.whole_bucket,
            }
            for q in found
        ]
    }


def _window(w: Window) -> dict[str, Any]:
    return {
        "start": to_datetime(w.start_us),
        "end": to_datetime(w.end_us),
        "avg_power_w": w.avg_power,
        "peak_power_w": w.peak_power,
        "energy_wh": w.energy_wh,
        "cumulative_energy_wh": w.cumulative_wh,
    }


async def metric_aggregate(
    conn: asyncpg.Connection,
    selection: Selection,
    metric: str,
    interval: str,
    interval_s: int,
    *,
    limit: int,
) -> dict[str, Any]:
    """count, sum, avg, min and max of a metric per interval."""
    found = await aggregates.metric_buckets(
        conn, selection, metric, interval_s=interval_s, limit=limit + 1
    )
    buckets = _bounded(found, limit, "buckets", "interval")
    check_buckets(buckets, selection.lo_us, selection.hi_us)
    return {
        "metric": metric,
        f"{selection.scope}_id": selection.key,
        **_span(selection),
        "interval": interval,
        "interval_s": interval_s,
        "buckets": [_bucket(b) for b in buckets],
        **await _incomplete(conn, selection, [metric]),
    }


async def site_energy(
    conn: asyncpg.Connection,
    selection: Selection,
    metric: str,
    window: str,
    window_s: int,
    *,
    limit: int,
) -> dict[str, Any]:
    """Per window: a site's average and peak power, energy and cumulative energy."""
    found = await aggregates.site_energy(
        conn, selection, metric, window_s=window_s, limit=limit + 1
    )
    windows = _bounded(found, limit, "windows", "window")
    check_windows(windows, selection.lo_us, selection.hi_us)
    return {
        "site_id": selection.key,
        "metric": metric,
        "window": window,
        "window_s": window_s,
        **_span(selection),
        "windows": [_window(w) for w in windows],
        "energy_wh": windows[-1].cumulative_wh if windows else 0.0,
        **await _incomplete(conn, selection, [metric]),
    }


async def efficiency(
    conn: asyncpg.Connection,
    selection: Selection,
    window: str,
    metrics: tuple[str, str],
    threshold: float,
) -> dict[str, Any]:
    """Energy delivered (the first metric) over energy consumed (the second), in percent."""
    dc, ac = metrics
    totals = await aggregates.metric_totals(conn, selection, metrics)
    for total in totals.values():
        check_buckets([total], selection.lo_us, selection.hi_us)
    delivered = totals[dc].sum if dc in totals else 0.0
    consumed = totals[ac].sum if ac in totals else 0.0
    pct = round(delivered / consumed * 100, 4) if consumed > 0 else None
    status = "NO_DATA" if pct is None else "FAULT_DETECTED" if pct < threshold else "OK"
    return {
        f"{selection.scope}_id": selection.key,
        "window": window,
        **_span(selection),
        "dc_metric": dc,
        "ac_metric": ac,
        "dc_delivered": delivered,
        "ac_consumed": consumed,
        "efficiency_pct": pct,
        "threshold_pct": threshold,
        "status": status,
        **await _incomplete(conn, selection, list(metrics)),
    }


async def _sync(cache: ReadCache, conn: asyncpg.Connection) -> None:
    """Learn the refresher's watermark and late refreshes, at most once per interval."""
    if not cache.sync_due():
        return
    state = await aggregates.rollup_state(conn)
    after = cache.cursor if cache.cursor is not None else state.log_id
    refreshed = await aggregates.refreshed_since(conn, after)
    cache.synced(state, refreshed)
    if state.watermark_us is not None:
        WATERMARK_LAG.set(time.time() - state.watermark_us / US)


def _staleness(settings: Settings, cache: ReadCache, lo: int, now_us: int) -> float:
    """Seconds after which any committed reading shows in this answer (see the notes).

    The stated bound, widened to what the refresher shows when it falls behind: a silent
    refresher, or late changes already waiting longer than the bound.
    """
    bound = settings.cache_ttl_recent_s
    state = cache.state
    if state.watermark_us is not None and lo < state.watermark_us:
        # Part of the answer is materialised: a late reading there waits for a refresh.
        late = settings.late_data_bound_s
        slack = settings.refresh_interval_s + settings.cache_sync_interval_s
        for since in (state.refreshed_at_us, state.pending_since_us):
            if since is not None:
                late = max(late, (now_us - since) / US + slack)
        bound = max(bound, late)
    return round(bound, 3)


async def serve(
    cache: ReadCache,
    conn: asyncpg.Connection,
    settings: Settings,
    key: Key,
    span: tuple[int, int],
    compute: Compute,
) -> Response:
    """Serve from the cache, or compute (the invariants are checked inside), stamp, keep."""
    await _sync(cache, conn)
    entry = cache.get(key)
    if entry is None:
        generation = cache.generation
        closed = cache.closed(span[1])
        # Read from a replica, the answer holds what the primary held `lag` seconds ago.
        lag = cache.lag()
        body = await compute(conn)
        body["as_of"] = iso(int((time.time() - lag) * 1000) * 1000)
        # orjson writes the bucket datetimes (ISO 8601, Z) far faster than Python does.
        body_bytes = orjson.dumps(body, option=orjson.OPT_UTC_Z)
        entry = Entry(body_bytes, span[0], span[1], closed, round(lag, 3))
        cache.put(key, entry, generation)
    # The bound is the refresher's state now, so a kept answer is stamped when served; a
    # replica's answer adds the lag it was read at.
    bound = _staleness(settings, cache, span[0], int(time.time() * US)) + entry.lag_s
    stamped = entry.body[:-1] + b',"staleness_bound_s":' + orjson.dumps(round(bound, 3)) + b"}"
    return Response(stamped, media_type="application/json")
