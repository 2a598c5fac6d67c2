"""Stream entries decoded into the rows one transaction writes."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.core.streams import entry_seq
from workers.writes import EventRow, ReadingRow

Entry = tuple[bytes, dict[bytes, bytes]]


@dataclass(slots=True)
class Poison:
    entry_id: bytes
    error: str
    payload: bytes


@dataclass(slots=True)
class Batch:
    """The newest version of each (tenant, device, ts) among the decoded entries."""

    events: list[dict[str, Any]] = field(default_factory=list)
    entry_ids: list[bytes] = field(default_factory=list)
    poison: list[Poison] = field(default_factory=list)

    def rows(self) -> tuple[list[EventRow], list[ReadingRow]]:
        return event_rows(self.events)


def decode(entries: Iterable[Entry]) -> Batch:
    batch = Batch()
    latest: dict[tuple[str, str, int], dict[str, Any]] = {}
    for entry_id, fields in entries:
        batch.entry_ids.append(entry_id)
        payload = fields.get(b"d", b"")
        try:
            # A replayed dead letter keeps the ingest order it had (its original sequence),
            # so an old version replayed after a correction cannot overwrite the correction.
            original = fields.get(b"seq")
            seq = int(original) if original is not None else entry_seq(entry_id)
            decoded = [orjson.loads(line) for line in payload.split(b"\n")]
            for event in decoded:
                event["seq"] = seq
                _ = event["tenant_id"], event["device_id"], event["ts"], event["metrics"]
        except (ValueError, KeyError, TypeError) as error:
            batch.poison.append(Poison(entry_id, f"undecodable entry: {error!r}", payload))
            continue
        # The highest sequence wins (for live entries: the last one in stream order).
        for event in decoded:
            key = (event["tenant_id"], event["device_id"], event["ts"])
            known = latest.get(key)
            if known is None or known["seq"] <= event["seq"]:
                latest[key] = event
    batch.events = list(latest.values())
    return batch


def event_rows(events: Sequence[dict[str, Any]]) -> tuple[list[EventRow], list[ReadingRow]]:
    events_out: list[EventRow] = []
    readings_out: list[ReadingRow] = []
    for e in events:
        tenant, device, ts, site, seq = (
            e["tenant_id"],
            e["device_id"],
            e["ts"],
            e["site_id"],
            e["seq"],
        )
        metrics = e["metrics"]
        events_out.append(
            (
                tenant,
                device,
                ts,
                e["event_id"],
                site,
                orjson.dumps(metrics).decode(),
                e["tags"],
                seq,
            )
        )
        for name, value in metrics.items():
            readings_out.append((tenant, device, name, ts, site, float(value), seq))
    return events_out, readings_out
