"""The tenant's devices and sites, for pickers and overviews (the hot status table)."""

from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.core.deps import ConnectionDep, TenantDep
from app.core.responses import errors, json_response
from app.core.timeparse import iso
from app.fleet import queries, schemas

router = APIRouter(tags=["fleet"], responses=errors(401, 403, 422, 503))

MAX_LIMIT = 500
Search = Annotated[str | None, Query(max_length=128, description="case-insensitive substring")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


@router.get("/v1/devices", response_model=schemas.Devices)
async def list_devices(
    conn: ConnectionDep, tenant: TenantDep, q: Search = None, limit: Limit = 50
) -> Response:
    """The tenant's devices whose id contains q, by id, with their latest values."""
    rows = await queries.devices(conn, tenant, queries.contains(q), limit + 1)
    devices = [
        {"device_id": r.device_id, "site_id": r.site_id, "last_ts": iso(r.last_ts_us),
         "metrics": r.metrics}
        for r in rows[:limit]
    ]  # fmt: skip
    return json_response({"devices": devices, "truncated": len(rows) > limit})


@router.get("/v1/sites", response_model=schemas.Sites)
async def list_sites(
    conn: ConnectionDep, tenant: TenantDep, q: Search = None, limit: Limit = 50
) -> Response:
    """The tenant's sites whose id contains q, by id, with their device counts."""
    rows = await queries.sites(conn, tenant, queries.contains(q), limit + 1)
    sites = [{"site_id": r.site_id, "devices": r.devices} for r in rows[:limit]]
    return json_response({"sites": sites, "truncated": len(rows) > limit})
