"""Read routes: events, device status, aggregates, site energy, efficiency and tag search.

Every read is scoped to the caller's tenant. Aggregate answers are built and served through
the read cache by app/reads/answers.py.
"""

import time
from collections.abc import Awaitable
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Query, Response

from app.core.deps import ReadConnectionDep, SettingsDep, TenantDep
from app.core.errors import InvalidInput, NotFound
from app.core.params import check_limit, decode_cursor, encode_cursor, parse_interval, parse_range
from app.core.replica import ReplicaFallbackRoute
from app.core.responses import errors, json_response
from app.core.settings import Settings
from app.core.timeparse import US, iso
from app.reads import answers, schemas
from app.reads import queries as reads
from app.reads.aggregates import Scope, Selection
from app.reads.deps import CacheDep
from app.reads.queries import EventRow

# Reads go to the replica when one is configured; a read it fails runs again on the primary.
router = APIRouter(
    tags=["reads"],
    responses=errors(401, 403, 404, 422, 503),
    route_class=ReplicaFallbackRoute,
)


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


@router.get("/v1/devices/{device_id}/events", response_model=schemas.DeviceEvents)
async def device_events(
    device_id: str,
    conn: ReadConnectionDep,
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


@router.get("/sensors/{sensor_id}/recent", response_model=schemas.SensorRecent)
async def sensor_recent(
    sensor_id: str,
    conn: ReadConnectionDep,
    settings: SettingsDep,
    tenant: TenantDep,
    limit: int | None = None,
) -> Response:
    """A sensor's most recent events, newest first."""
    lo, hi = parse_range(None, None, ("from", "to"))
    count = _limit(limit, settings)
    rows = await reads.device_events(conn, tenant, sensor_id, lo, hi, count)
    return json_response({"sensor_id": sensor_id, "events": [_event(r) for r in rows]})


@router.get("/v1/events", response_model=schemas.EventPage)
async def list_events(
    conn: ReadConnectionDep,
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
    rows = await reads.tenant_events(conn, tenant, offset, count + 1)
    return json_response(
        {
            "page": page,
            "size": count,
            "events": [_event(r) for r in rows[:count]],
            "has_more": len(rows) > count,
        }
    )


@router.get("/v1/devices/{device_id}/status", response_model=schemas.DeviceStatus)
async def device_status(device_id: str, conn: ReadConnectionDep, tenant: TenantDep) -> Response:
    """The latest value of each metric of a device (the hot status table)."""
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


@router.get("/v1/search", response_model=schemas.SearchResult)
async def search(
    conn: ReadConnectionDep,
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


def _recent(
    from_value: str | None, to_value: str | None, names: tuple[str, str]
) -> tuple[int, int]:
    """[from, to) where `to` defaults to now and `from` to a day before `to`."""
    now = int(time.time() * US)
    return parse_range(from_value, to_value, names, default_to_us=now, default_span_us=DAY_US)


@router.get("/v1/metrics/aggregate", response_model=schemas.Aggregate)
async def metric_aggregate(
    conn: ReadConnectionDep,
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
    interval_s = parse_interval(interval, "interval", maximum_s=settings.aggregate_max_interval_s)
    lo, hi = _recent(from_time, to_time, ("from_time", "to_time"))
    selection = Selection(tenant, scope, key, lo, hi)
    limit = settings.aggregate_max_buckets

    def compute(conn: asyncpg.Connection) -> Awaitable[dict[str, Any]]:
        return answers.metric_aggregate(conn, selection, metric, interval, interval_s, limit=limit)

    cache_key = ("aggregate", tenant, scope, key, metric, lo, hi, interval_s)
    return await answers.serve(cache, conn, settings, cache_key, (lo, hi), compute)


@router.get("/sites/{site_id}/agg", response_model=schemas.SiteEnergy)
async def site_agg(
    site_id: str,
    conn: ReadConnectionDep,
    settings: SettingsDep,
    tenant: TenantDep,
    cache: CacheDep,
    window: str = "1m",
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
) -> Response:
    """Per window: average and peak site power, energy (Wh) and cumulative energy."""
    window_s = parse_interval(window, "window", maximum_s=settings.aggregate_max_interval_s)
    lo, hi = _recent(from_, to, ("from", "to"))
    # Energy is integrated per minute, so the range is trimmed inward to whole minutes.
    lo, hi = -(-lo // MINUTE_US) * MINUTE_US, hi // MINUTE_US * MINUTE_US
    if lo >= hi:
        raise InvalidInput("the range holds no whole minute", field="to")
    selection = Selection(tenant, "site", site_id, lo, hi)
    limit = settings.aggregate_max_buckets
    metric = settings.power_metric

    def compute(conn: asyncpg.Connection) -> Awaitable[dict[str, Any]]:
        return answers.site_energy(conn, selection, metric, window, window_s, limit=limit)

    cache_key = ("site_agg", tenant, site_id, metric, lo, hi, window_s)
    return await answers.serve(cache, conn, settings, cache_key, (lo, hi), compute)


@router.get("/v1/analytics/efficiency", response_model=schemas.Efficiency)
async def efficiency(
    conn: ReadConnectionDep,
    settings: SettingsDep,
    tenant: TenantDep,
    cache: CacheDep,
    site_id: str | None = None,
    device_id: str | None = None,
    window: str = "24h",
) -> Response:
    """Energy delivered (DC) over energy consumed (AC) in the last window, as a percentage."""
    scope, key = _scope(device_id, site_id)
    window_s = parse_interval(window, "window", maximum_s=settings.aggregate_max_interval_s)
    hi = int(time.time() * US)
    lo = hi - window_s * US
    selection = Selection(tenant, scope, key, lo, hi)
    metrics = (settings.efficiency_dc_metric, settings.efficiency_ac_metric)
    threshold = settings.efficiency_threshold_pct

    def compute(conn: asyncpg.Connection) -> Awaitable[dict[str, Any]]:
        return answers.efficiency(conn, selection, window, metrics, threshold)

    # Keyed without the clock: the answer for "the last window" is reused while it lives.
    cache_key = ("efficiency", tenant, scope, key, window_s)
    return await answers.serve(cache, conn, settings, cache_key, (lo, hi), compute)
