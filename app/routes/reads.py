"""Read routes: events, device status, aggregates, site energy, efficiency and tag search.

Every read is scoped to the caller's tenant. Aggregate answers go through the read cache
and carry `as_of` (when they were computed) and `staleness_bound_s` (every reading
committed longer ago than that is reflected in them); see ENGINEERING_NOTES.md.
"""

import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.cache import Entry, Key, ReadCache, check_buckets, check_windows
from app.deps import EngineDep, SettingsDep, TenantDep
from app.errors import InvalidInput, NotFound
from app.json import json_response
from app.metrics import WATERMARK_LAG
from app.models import aggregates, reads
from app.models.aggregates import Scope
from app.models.reads import EventRow
from app.params import (
    US,
    check_limit,
    decode_cursor,
    encode_cursor,
    iso,
    parse_duration,
    parse_range,
    to_datetime,
)
from app.settings import Settings

router = APIRouter(tags=["reads"])


async def _cache(request: Request) -> ReadCache:
    cache: ReadCache = request.app.state.cache
    return cache


CacheDep = Annotated[ReadCache, Depends(_cache)]
MINUTE_US = 60 * US
DAY_US = 86400 * US


def _event(row: EventRow) -> dict[str, Any]:
    return {
        "event_id": row.event_id,
        "device_id": row.device_id,
        "site_id": row.site_id,
        "ts": iso(row.ts_us),
        "metrics": row.metrics,
        "tags": row.tags,
    }


def _limit(value: int | None, settings: Settings) -> int:
    chosen = settings.read_default_limit if value is None else value
    return check_limit(chosen, "limit", settings.read_max_limit)


@router.get("/v1/devices/{device_id}/events")
async def device_events(
    device_id: str,
    engine: EngineDep,
    settings: SettingsDep,
    tenant: TenantDep,
    from_time: str | None = None,
    to_time: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Response:
    """A device's events in [from_time, to_time), newest first; pass next_cursor for more."""
    lo, hi = parse_range(from_time, to_time, ("from_time", "to_time"))
    count = _limit(limit, settings)
    if cursor:
        hi = min(hi, decode_cursor(cursor, "cursor", with_device=False)[0])
    async with engine.connect() as conn:
        rows = await reads.device_events(conn, tenant, device_id, lo, hi, count + 1)
    more = len(rows) > count
    rows = rows[:count]
    return json_response(
        {
            "device_id": device_id,
            "events": [_event(r) for r in rows],
            "next_cursor": encode_cursor(rows[-1].ts_us) if more else None,
        }
    )


@router.get("/sensors/{sensor_id}/recent")
async def sensor_recent(
    sensor_id: str,
    engine: EngineDep,
    settings: SettingsDep,
    tenant: TenantDep,
    limit: int | None = None,
) -> Response:
    """A sensor's most recent events, newest first."""
    lo, hi = parse_range(None, None, ("from", "to"))
    count = _limit(limit, settings)
    async with engine.connect() as conn:
        rows = await reads.device_events(conn, tenant, sensor_id, lo, hi, count)
    return json_response({"sensor_id": sensor_id, "events": [_event(r) for r in rows]})


@router.get("/v1/events")
async def list_events(
    engine: EngineDep,
    settings: SettingsDep,
    tenant: TenantDep,
    page: int = 1,
    size: int | None = None,
) -> Response:
    """The tenant's events, newest first, one page at a time."""
    if page < 1:
        raise InvalidInput("must be 1 or more", field="page")
    chosen = settings.read_default_limit if size is None else size
    count = check_limit(chosen, "size", settings.read_max_limit)
    offset = (page - 1) * count
    if offset > settings.read_max_page_offset:
        raise InvalidInput(
            f"reaches past {settings.read_max_page_offset} events; page by time with "
            "/v1/devices/{device_id}/events or /v1/search instead",
            field="page",
        )
    async with engine.connect() as conn:
        rows = await reads.tenant_events(conn, tenant, offset, count + 1)
    return json_response(
        {
            "page": page,
            "size": count,
            "events": [_event(r) for r in rows[:count]],
            "has_more": len(rows) > count,
        }
    )


@router.get("/v1/devices/{device_id}/status")
async def device_status(device_id: str, engine: EngineDep, tenant: TenantDep) -> Response:
    """The latest value of each metric of a device (the hot status table)."""
    async with engine.connect() as conn:
        rows = await reads.device_status(conn, tenant, device_id)
    if not rows:
        raise NotFound("no device with this id has sent data", field="device_id")
    newest = max(rows, key=lambda r: r.ts_us)
    return json_response(
        {
            "device_id": device_id,
            "site_id": newest.site_id,
            "last_seen": iso(newest.ts_us),
            "metrics": {r.metric: {"value": r.value, "ts": iso(r.ts_us)} for r in rows},
        }
    )


@router.get("/v1/search")
async def search(
    engine: EngineDep,
    settings: SettingsDep,
    tenant: TenantDep,
    tag: Annotated[list[str], Query(min_length=1)],
    from_time: str | None = None,
    to_time: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Response:
    """Events carrying every given tag, newest first; pass next_cursor for more."""
    lo, hi = parse_range(from_time, to_time, ("from_time", "to_time"))
    count = _limit(limit, settings)
    before: tuple[int, str] = (hi, "")
    if cursor:
        ts_us, device = decode_cursor(cursor, "cursor", with_device=True)
        before = (ts_us, device or "")
    async with engine.connect() as conn:
        rows = await reads.search_events(conn, tenant, tag, lo, hi, before, count + 1)
    more = len(rows) > count
    rows = rows[:count]
    last = rows[-1] if rows else None
    return json_response(
        {
            "tags": tag,
            "events": [_event(r) for r in rows],
            "next_cursor": encode_cursor(last.ts_us, last.device_id) if more and last else None,
        }
    )


def _scope(device_id: str | None, site_id: str | None) -> tuple[Scope, str]:
    if (device_id is None) == (site_id is None):
        raise InvalidInput("give exactly one of device_id and site_id", field="device_id")
    if device_id is not None:
        return "device", device_id
    assert site_id is not None
    return "site", site_id


async def _sync(cache: ReadCache, engine: AsyncEngine) -> None:
    """Learn the refresher's watermark and late refreshes, at most once per interval."""
    if not cache.sync_due():
        return
    async with engine.connect() as conn:
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


Compute = Callable[[AsyncConnection], Awaitable[dict[str, Any]]]


async def _answer(
    cache: ReadCache,
    engine: AsyncEngine,
    settings: Settings,
    key: Key,
    span: tuple[int, int],
    compute: Compute,
) -> Response:
    """Serve from the cache, or compute (the invariants are checked inside), stamp, keep."""
    await _sync(cache, engine)
    entry = cache.get(key)
    if entry is None:
        generation = cache.generation
        closed = cache.closed(span[1])
        async with engine.connect() as conn:
            body = await compute(conn)
        body["as_of"] = iso(int(time.time() * 1000) * 1000)
        # orjson writes the bucket datetimes (ISO 8601, Z) far faster than Python does.
        entry = Entry(orjson.dumps(body, option=orjson.OPT_UTC_Z), span[0], span[1], closed)
        cache.put(key, entry, generation)
    # The bound is the refresher's state now, so a kept answer is stamped when served.
    bound = _staleness(settings, cache, span[0], int(time.time() * US))
    stamped = entry.body[:-1] + b',"staleness_bound_s":' + orjson.dumps(bound) + b"}"
    return Response(stamped, media_type="application/json")


@router.get("/v1/metrics/aggregate")
async def metric_aggregate(
    engine: EngineDep,
    settings: SettingsDep,
    tenant: TenantDep,
    cache: CacheDep,
    metric: str,
    device_id: str | None = None,
    site_id: str | None = None,
    from_time: str | None = None,
    to_time: str | None = None,
    interval: str = "1m",
) -> Response:
    """count, sum, avg, min and max of a metric per interval, for a device or a site."""
    scope, key = _scope(device_id, site_id)
    interval_s = parse_duration(interval, "interval", maximum_s=settings.aggregate_max_interval_s)
    lo, hi = parse_range(
        from_time,
        to_time,
        ("from_time", "to_time"),
        default_to_us=int(time.time() * US),
        default_span_us=DAY_US,
    )
    limit = settings.aggregate_max_buckets

    async def compute(conn: AsyncConnection) -> dict[str, Any]:
        buckets = await aggregates.metric_buckets(
            conn,
            tenant=tenant,
            scope=scope,
            key=key,
            metric=metric,
            from_us=lo,
            to_us_=hi,
            interval_s=interval_s,
            limit=limit + 1,
        )
        if len(buckets) > limit:
            raise InvalidInput(
                f"the range holds more than {limit} buckets with data; "
                "use a longer interval or a shorter range",
                field="interval",
            )
        check_buckets(buckets, lo, hi)
        return {
            "metric": metric,
            f"{scope}_id": key,
            "from": iso(lo),
            "to": iso(hi),
            "interval": interval,
            "interval_s": interval_s,
            "buckets": [
                {
                    "start": to_datetime(b.start_us),
                    "end": to_datetime(b.end_us),
                    "count": b.count,
                    "sum": b.sum,
                    "avg": b.avg,
                    "min": b.min,
                    "max": b.max,
                }
                for b in buckets
            ],
        }

    cache_key = ("aggregate", tenant, scope, key, metric, lo, hi, interval_s)
    return await _answer(cache, engine, settings, cache_key, (lo, hi), compute)


@router.get("/sites/{site_id}/agg")
async def site_agg(
    site_id: str,
    engine: EngineDep,
    settings: SettingsDep,
    tenant: TenantDep,
    cache: CacheDep,
    window: str = "1m",
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
) -> Response:
    """Per window: average and peak site power, energy (Wh) and cumulative energy."""
    window_s = parse_duration(window, "window", maximum_s=settings.aggregate_max_interval_s)
    lo, hi = parse_range(
        from_, to, ("from", "to"), default_to_us=int(time.time() * US), default_span_us=DAY_US
    )
    # Energy is integrated per minute, so the range is trimmed inward to whole minutes.
    lo, hi = -(-lo // MINUTE_US) * MINUTE_US, hi // MINUTE_US * MINUTE_US
    if lo >= hi:
        raise InvalidInput("the range holds no whole minute", field="to")
    limit = settings.aggregate_max_buckets
    metric = settings.power_metric

    async def compute(conn: AsyncConnection) -> dict[str, Any]:
        windows = await aggregates.site_energy(
            conn,
            tenant=tenant,
            site=site_id,
            metric=metric,
            from_us=lo,
            to_us_=hi,
            window_s=window_s,
            limit=limit + 1,
        )
        if len(windows) > limit:
            raise InvalidInput(
                f"the range holds more than {limit} windows with data; "
                "use a longer window or a shorter range",
                field="window",
            )
        check_windows(windows, lo, hi)
        return {
            "site_id": site_id,
            "metric": metric,
            "window": window,
            "window_s": window_s,
            "from": iso(lo),
            "to": iso(hi),
            "windows": [
                {
                    "start": to_datetime(w.start_us),
                    "end": to_datetime(w.end_us),
                    "avg_power_w": w.avg_power,
                    "peak_power_w": w.peak_power,
                    "energy_wh": w.energy_wh,
                    "cumulative_energy_wh": w.cumulative_wh,
                }
                for w in windows
            ],
            "energy_wh": windows[-1].cumulative_wh if windows else 0.0,
        }

    cache_key = ("site_agg", tenant, site_id, metric, lo, hi, window_s)
    return await _answer(cache, engine, settings, cache_key, (lo, hi), compute)


@router.get("/v1/analytics/efficiency")
async def efficiency(
    engine: EngineDep,
    settings: SettingsDep,
    tenant: TenantDep,
    cache: CacheDep,
    site_id: str | None = None,
    device_id: str | None = None,
    window: str = "24h",
) -> Response:
    """Energy delivered (DC) over energy consumed (AC) in the last window, as a percentage."""
    scope, key = _scope(device_id, site_id)
    window_s = parse_duration(window, "window", maximum_s=settings.aggregate_max_interval_s)
    hi = int(time.time() * US)
    lo = hi - window_s * US
    dc, ac = settings.efficiency_dc_metric, settings.efficiency_ac_metric
    threshold = settings.efficiency_threshold_pct

    async def compute(conn: AsyncConnection) -> dict[str, Any]:
        totals = await aggregates.metric_totals(
            conn,
            tenant=tenant,
            scope=scope,
            key=key,
            metrics=[dc, ac],
            from_us=lo,
            to_us_=hi,
        )
        for total in totals.values():
            check_buckets([total], lo, hi)
        delivered = totals[dc].sum if dc in totals else 0.0
        consumed = totals[ac].sum if ac in totals else 0.0
        pct = round(delivered / consumed * 100, 4) if consumed > 0 else None
        status = "NO_DATA" if pct is None else "FAULT_DETECTED" if pct < threshold else "OK"
        return {
            f"{scope}_id": key,
            "window": window,
            "from": iso(lo),
            "to": iso(hi),
            "dc_metric": dc,
            "ac_metric": ac,
            "dc_delivered": delivered,
            "ac_consumed": consumed,
            "efficiency_pct": pct,
            "threshold_pct": threshold,
            "status": status,
        }

    # Keyed without the clock: the answer for "the last window" is reused while it lives.
    cache_key = ("efficiency", tenant, scope, key, window_s)
    return await _answer(cache, engine, settings, cache_key, (lo, hi), compute)
