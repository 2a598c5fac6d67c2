"""Ingest routes: validate, dedupe and enqueue; the workers store."""

from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from app.core.deps import IdentityDep, SettingsDep
from app.core.responses import errors
from app.core.settings import Settings
from app.ingest.body import read_body
from app.ingest.contract import json_schema
from app.ingest.deps import GateDep, GroupDep
from app.ingest.service import Answer, answer_batch, answer_single, limits

router = APIRouter(tags=["ingest"], responses=errors(400, 401, 403, 413, 422, 429, 503))

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
    request: Request, settings: SettingsDep, group: GroupDep, gate: GateDep, identity: IdentityDep
) -> Response:
    """Accept one event; 202 once it is durably enqueued or known as a duplicate."""
    body = await read_body(request, settings.max_body_bytes)
    return _response(await answer_single(body, settings, group, gate, identity))


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
    request: Request, settings: SettingsDep, group: GroupDep, gate: GateDep, identity: IdentityDep
) -> Response:
    """Accept a JSON array or NDJSON of events; one result per event, in order."""
    body = await read_body(request, settings.max_body_bytes)
    content_type = request.headers.get("content-type", "application/json")
    return _response(await answer_batch(body, content_type, settings, group, gate, identity))


def _response(answer: Answer) -> Response:
    return Response(answer.body, status_code=answer.status, media_type="application/json")


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
