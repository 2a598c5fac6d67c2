"""Alert history rows, decoded from the alert stream's entries."""

from datetime import UTC, datetime

import orjson

from app.alerts.queries import HistoryRow
from app.core.streams import entry_seq, text


def history_row(alert_id: bytes | str, payload: bytes) -> HistoryRow:
    alert_text = text(alert_id)
    alert = orjson.loads(payload)
    ts = datetime.fromisoformat(alert["time"]).replace(tzinfo=UTC)
    return (
        alert["tenant_id"],
        alert_text,
        entry_seq(alert_text),
        alert["rule_id"],
        alert["device_id"],
        alert["site_id"],
        alert["metric"],
        alert["state"],
        float(alert["metrics"][alert["metric"]]),
        ts,
        payload.decode(),
    )
