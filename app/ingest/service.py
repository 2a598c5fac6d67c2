"""Ingest: validate a request's events and enqueue the new ones; shared by both routes."""

import time
from dataclasses import dataclass
from typing import Any

import orjson

from app.core.errors import InvalidInput
from app.core.metrics import EVENTS
from app.core.settings import Settings
from app.ingest.contract import Limits, normalise, raw_event_id
from app.ingest.enqueue import Enqueuer


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


async def ingest(enqueuer: Enqueuer, settings: Settings, tenant: str, raws: list[Any]) -> Outcome:
    bounds = limits(settings)
    results: list[dict[str, Any]] = []
    positions: list[int] = []
    keys: list[tuple[str, int]] = []
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
        keys.append((event["event_id"], event["ts"]))
        payloads.append(orjson.dumps(event))
    fresh = await enqueuer.enqueue(tenant, keys, payloads, settings.dedupe_window_s)
    duplicate = 0
    for position, is_new in zip(positions, fresh, strict=True):
        if not is_new:
            results[position]["status"] = "duplicate"
            duplicate += 1
    accepted = len(fresh) - duplicate
    EVENTS.labels("accepted").inc(accepted)
    EVENTS.labels("duplicate").inc(duplicate)
    EVENTS.labels("rejected").inc(rejected)
    return Outcome(results, accepted, duplicate, rejected)
