"""All alert SQL: rules and their version counter, and alert history.

Query functions take a connection and never commit: the caller owns the transaction.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from app.alerts.rules import ForecastCondition, Rule

RULE_COLUMNS = (
    "tenant_id, rule_id, device_id, site_id, metric, op, threshold, clear_threshold, "
    "for_s, cooldown_s, version, created_at, deleted_at, forecast"
)

# Taking the tenant's counter row serialises that tenant's rule changes, so versions are
# handed out in commit order and "every version up to N" is a snapshot a worker can trust.
BUMP_VERSION = """
INSERT INTO alert_rule_versions AS v (tenant_id, version) VALUES ($1, 1)
ON CONFLICT (tenant_id) DO UPDATE SET version = v.version + 1
RETURNING version
"""

INSERT_RULE = f"""
INSERT INTO alert_rules (tenant_id, device_id, site_id, metric, op, threshold,
                         clear_threshold, for_s, cooldown_s, forecast, version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11)
RETURNING {RULE_COLUMNS}
"""

DELETE_RULE = f"""
UPDATE alert_rules SET deleted_at = now(), version = $3
WHERE tenant_id = $1 AND rule_id = $2 AND deleted_at IS NULL
RETURNING {RULE_COLUMNS}
"""

CHANGED_RULES = """
SELECT r.*
FROM alert_rules r
JOIN unnest($1::text[], $2::bigint[]) AS known(tenant_id, version)
  ON r.tenant_id = known.tenant_id AND r.version > known.version
ORDER BY r.tenant_id, r.version
"""

INSERT_HISTORY = """
INSERT INTO alert_history (tenant_id, alert_id, alert_seq, rule_id, device_id, site_id,
                           metric, state, value, ts, payload)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[],
                     $6::text[], $7::text[], $8::text[], $9::float8[], $10::timestamptz[],
                     $11::json[])
ON CONFLICT (tenant_id, alert_id) DO NOTHING
"""

# The device is None for a predicted alert on a site's aggregate (no device describes it).
HistoryRow = tuple[str, str, int, int, str | None, str | None, str, str, float, datetime, str]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def rule_from_row(row: Mapping[Any, Any]) -> Rule:
    forecast = row["forecast"]
    return Rule(
        tenant_id=row["tenant_id"],
        rule_id=row["rule_id"],
        metric=row["metric"],
        op=row["op"],
        threshold=row["threshold"],
        device_id=row["device_id"],
        site_id=row["site_id"],
        clear_threshold=row["clear_threshold"],
        for_s=row["for_s"],
        cooldown_s=row["cooldown_s"],
        version=row["version"],
        created_at=_iso(row["created_at"]),
        deleted=row["deleted_at"] is not None,
        forecast=ForecastCondition.from_stored(orjson.loads(forecast) if forecast else None),
    )


GET_RULE = f"""
SELECT {RULE_COLUMNS} FROM alert_rules
WHERE tenant_id = $1 AND rule_id = $2 AND deleted_at IS NULL
"""

LIST_RULES = f"""
SELECT {RULE_COLUMNS} FROM alert_rules WHERE tenant_id = $1 AND deleted_at IS NULL ORDER BY rule_id
"""

RULE_FIELDS = (
    "device_id",
    "site_id",
    "metric",
    "op",
    "threshold",
    "clear_threshold",
    "for_s",
    "cooldown_s",
    "forecast",
)

FORECAST_RULES = f"""
SELECT {RULE_COLUMNS} FROM alert_rules
WHERE forecast IS NOT NULL AND deleted_at IS NULL
ORDER BY tenant_id, rule_id
"""

FORECAST_RULES_OF = f"""
SELECT {RULE_COLUMNS} FROM alert_rules
WHERE forecast IS NOT NULL AND deleted_at IS NULL AND tenant_id = $1 AND metric = $2
    AND CASE WHEN $3 THEN site_id = $4 ELSE device_id = $4 END
ORDER BY rule_id
"""


async def count_rules(conn: asyncpg.Connection, tenant: str) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM alert_rules WHERE tenant_id = $1 AND deleted_at IS NULL", tenant
    )
    return count


async def _bump_version(conn: asyncpg.Connection, tenant: str) -> int:
    version: int = await conn.fetchval(BUMP_VERSION, tenant)
    return version


async def create_rule(conn: asyncpg.Connection, tenant: str, fields: Mapping[str, Any]) -> Rule:
    """Insert a rule under a new tenant version; the caller commits."""
    version = await _bump_version(conn, tenant)
    values = [fields[name] for name in RULE_FIELDS]
    row = await conn.fetchrow(INSERT_RULE, tenant, *values, version)
    assert row is not None
    return rule_from_row(row)


async def delete_rule(conn: asyncpg.Connection, tenant: str, rule_id: int) -> Rule | None:
    """Tombstone a live rule under a new tenant version; None when there is none."""
    version = await _bump_version(conn, tenant)
    row = await conn.fetchrow(DELETE_RULE, tenant, rule_id, version)
    return rule_from_row(row) if row is not None else None


async def get_rule(conn: asyncpg.Connection, tenant: str, rule_id: int) -> Rule | None:
    row = await conn.fetchrow(GET_RULE, tenant, rule_id)
    return rule_from_row(row) if row is not None else None


async def list_rules(conn: asyncpg.Connection, tenant: str) -> list[Rule]:
    return [rule_from_row(row) for row in await conn.fetch(LIST_RULES, tenant)]


async def forecast_rules(conn: asyncpg.Connection) -> list[Rule]:
    """Every tenant's live predicted-breach rules (the forecaster's scheduled pass)."""
    return [rule_from_row(row) for row in await conn.fetch(FORECAST_RULES)]


async def forecast_rules_of(
    conn: asyncpg.Connection, tenant: str, *, site: bool, key: str, metric: str
) -> list[Rule]:
    """The live predicted-breach rules on one device's (or site's) metric."""
    rows = await conn.fetch(FORECAST_RULES_OF, tenant, metric, site, key)
    return [rule_from_row(row) for row in rows]


async def rule_changes(
    conn: asyncpg.Connection, known: Mapping[str, int]
) -> tuple[dict[str, int], list[Rule]]:
    """Every tenant's version, and the rule rows (tombstones too) newer than `known`.

    One read-only snapshot, so the versions returned cover exactly the rows returned.
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        versions = {
            row["tenant_id"]: row["version"]
            for row in await conn.fetch("SELECT tenant_id, version FROM alert_rule_versions")
        }
        stale = [t for t, v in versions.items() if v > known.get(t, 0)]
        rows = []
        if stale:
            rows = await conn.fetch(CHANGED_RULES, stale, [known.get(t, 0) for t in stale])
    return versions, [rule_from_row(row) for row in rows]


async def insert_history(conn: asyncpg.Connection, rows: Sequence[HistoryRow]) -> None:
    """Record transitions; a row already recorded (a replayed stream entry) is skipped."""
    if rows:
        await conn.execute(INSERT_HISTORY, *(list(column) for column in zip(*rows, strict=True)))


async def list_history(
    conn: asyncpg.Connection,
    tenant: str,
    *,
    device_id: str | None,
    rule_id: int | None,
    from_time: datetime | None,
    to_time: datetime | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Transitions by event time, oldest first, with the alert stream id of each."""
    # Only the filters given go into the statement, so each shape gets its own plan.
    where = ["tenant_id = $1"]
    args: list[Any] = [tenant]
    for column, op, value in (
        ("device_id", "=", device_id),
        ("rule_id", "=", rule_id),
        ("ts", ">=", from_time),
        ("ts", "<", to_time),
    ):
        if value is not None:
            args.append(value)
            where.append(f"{column} {op} ${len(args)}")
    args.append(limit)
    rows = await conn.fetch(
        "SELECT alert_id, payload::text AS payload FROM alert_history "
        f"WHERE {' AND '.join(where)} ORDER BY ts, alert_seq LIMIT ${len(args)}",
        *args,
    )
    return [dict(row) for row in rows]
