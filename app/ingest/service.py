"""Ingest: validate a request's events and enqueue the new ones; the two answers, shared by
the routes and the lean path (app/ingest/lean.py)."""

import time
from dataclasses import dataclass
from typing import Any

import orjson

from app.core.errors import InvalidInput, PayloadTooLarge
from app.core.metrics import EVENTS
from app.core.responses import dumps
from app.core.settings import Settings
from app.core.tenancy import Identity
from app.ingest.admission import Admission
from app.ingest.body import parse_batch, parse_json
from app.ingest.contract import Limits, normalise, raw_event_id
from app.ingest.enqueue import EventKey
from app.ingest.group import GroupCommit

# Bound once: a labels() lookup per request is measurable on this path.
_ACCEPTED, _DUPLICATE, _REJECTED = (EVENTS.labels(s) for s in ("accepted", "duplicate", "rejected"))


@dataclass(slots=True)
class Outcome:
    results: list[dict[str, Any]]
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0

    def body(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
            "results": self.results,
        }


def limits(settings: Settings) -> Limits:
    return Limits(
        now_us=time.time_ns() // 1000,
        max_future_skew_us=settings.max_future_skew_s * 1_000_000,
        retention_us=settings.retention_days * 86_400_000_000,
        max_name_length=settings.max_name_length,
        max_tags=settings.max_tags,
        max_metrics=settings.max_metrics,
    )


async def ingest(group: GroupCommit, settings: Settings, tenant: str, raws: list[Any]) -> Outcome:
    bounds = limits(settings)
    results: list[dict[str, Any]] = []
    positions: list[int] = []
    keys: list[EventKey] = []
    payloads: list[bytes] = []
    rejected = 0
    for index, raw in enumerate(raws):
        try:
            event = normalise(raw, tenant, bounds)
        except InvalidInput as error:
            rejected += 1
            results.append(
                {
                    "index": index,
                    "event_id": raw_event_id(raw, bounds),
                    "status": "rejected",
                    "field": error.field,
                    "reason": f"{error.field}: {error.message}",
                }
            )
            continue
        positions.append(len(results))
        results.append({"index": index, "event_id": event["event_id"], "status": "accepted"})
        keys.append((event["event_id"], event["ts"], event["device_id"]))
        payloads.append(orjson.dumps(event))
    fresh = await group.enqueue(tenant, keys, payloads)
    duplicate = 0
    for position, is_new in zip(positions, fresh, strict=True):
        if not is_new:
            results[position]["status"] = "duplicate"
            duplicate += 1
    accepted = len(fresh) - duplicate
    _ACCEPTED.inc(accepted)
    _DUPLICATE.inc(duplicate)
    _REJECTED.inc(rejected)
    return Outcome(results, accepted, duplicate, rejected)


@dataclass(frozen=True, slots=True)
class Answer:
    """An ingest answer, independent of how it is sent (FastAPI route or the lean path)."""

    status: int
    body: bytes


_ACCEPTED_HEAD = b'{"event_id":'
_ACCEPTED_TAIL = b',"status":"accepted"}'


async def answer_single(
    body: bytes, settings: Settings, group: GroupCommit, gate: Admission, identity: Identity
) -> Answer:
    """POST /v1/events: one event; 202 once it is durably enqueued or known as a duplicate."""
    raw = parse_json(body)
    await gate.check(identity, 1)
    outcome = await ingest(group, settings, identity.tenant, [raw])
    result = outcome.results[0]
    if result["status"] == "rejected":
        raise InvalidInput(result["reason"].split(": ", 1)[1], field=result["field"])
    if result["status"] == "accepted":
        # The common answer, pre-encoded around the id.
        return Answer(202, _ACCEPTED_HEAD + orjson.dumps(result["event_id"]) + _ACCEPTED_TAIL)
    return Answer(202, dumps({"event_id": result["event_id"], "status": result["status"]}))


async def answer_batch(
    body: bytes,
    content_type: str,
    settings: Settings,
    group: GroupCommit,
    gate: Admission,
    identity: Identity,
) -> Answer:
    """POST /v1/events/batch: a JSON array or NDJSON; one result per event, in order."""
    raws = parse_batch(body, content_type)
    if len(raws) > settings.max_batch_events:
        raise PayloadTooLarge(
            f"holds {len(raws)} events; at most {settings.max_batch_events} are allowed",
            field="body",
        )
    await gate.check(identity, len(raws))
    outcome = await ingest(group, settings, identity.tenant, raws)
    return Answer(202, dumps(outcome.body()))
