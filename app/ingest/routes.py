"""Ingest routes: validate, dedupe and enqueue; the workers store."""

from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from app.core.deps import SettingsDep, TenantDep
from app.core.errors import InvalidInput, PayloadTooLarge
from app.core.responses import errors, json_response
from app.core.settings import Settings
from app.ingest.body import parse_batch, parse_json, read_body
from app.ingest.contract import json_schema
from app.ingest.deps import EnqueuerDep, GateDep
from app.ingest.service import ingest, limits

router = APIRouter(tags=["ingest"], responses=errors(400, 413, 422, 429, 503))

EVENT_EXAMPLE = {
    "event_id": "e001",
    "device_id": "deviceA",
    "timeStamp": "2025-01-15T10:00:00",
    "metrics": {"temp": 34.2, "cpu": 0.44},
    "tags": ["room:101", "sensor:v2"],
}


class EventResult(BaseModel):
    event_id: str | None
    status: Literal["accepted", "duplicate", "rejected"]


class BatchItem(EventResult):
    index: int
    field: str | None = None
    reason: str | None = None


class BatchResult(BaseModel):
    accepted: int
    duplicate: int
    rejected: int
    results: list[BatchItem]


@router.post(
    "/v1/events",
    status_code=202,
    response_model=EventResult,
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {}}}},
)
async def ingest_event(
    request: Request, settings: SettingsDep, enqueuer: EnqueuerDep, gate: GateDep, tenant: TenantDep
) -> Response:
    """Accept one event; 202 once it is durably enqueued or known as a duplicate."""
    raw = parse_json(await read_body(request, settings.max_body_bytes))
    await gate.check()
    outcome = await ingest(enqueuer, settings, tenant, [raw])
    result = outcome.results[0]
    if result["status"] == "rejected":
        raise InvalidInput(result["reason"].split(": ", 1)[1], field=result["field"])
    return json_response({"event_id": result["event_id"], "status": result["status"]}, 202)


@router.post(
    "/v1/events/batch",
    status_code=202,
    response_model=BatchResult,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {}, "application/x-ndjson": {}},
        }
    },
)
async def ingest_batch(
    request: Request, settings: SettingsDep, enqueuer: EnqueuerDep, gate: GateDep, tenant: TenantDep
) -> Response:
    """Accept a JSON array or NDJSON of events; one result per event, in order."""
    body = await read_body(request, settings.max_body_bytes)
    raws = parse_batch(body, request.headers.get("content-type", "application/json"))
    if len(raws) > settings.max_batch_events:
        raise PayloadTooLarge(
            f"holds {len(raws)} events; at most {settings.max_batch_events} are allowed",
            field="body",
        )
    await gate.check()
    outcome = await ingest(enqueuer, settings, tenant, raws)
    return json_response(outcome.body(), 202)


def openapi_patch(schema: dict[str, Any], settings: Settings) -> None:
    """The request bodies, from the contract's own bounds (app/ingest/contract.py)."""
    event = {**json_schema(limits(settings)), "example": EVENT_EXAMPLE}
    single = schema["paths"]["/v1/events"]["post"]["requestBody"]["content"]
    single["application/json"]["schema"] = event
    batch = schema["paths"]["/v1/events/batch"]["post"]["requestBody"]["content"]
    batch["application/json"]["schema"] = {
        "type": "array",
        "items": event,
        "maxItems": settings.max_batch_events,
    }
    batch["application/x-ndjson"]["schema"] = {
        "type": "string",
        "description": "one event object (as above) per line",
    }
