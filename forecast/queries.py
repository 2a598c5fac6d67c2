"""All forecaster SQL: the versioned models in forecast_models (migration 0005).

Query functions take a connection and never commit: the caller owns the transaction.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from app.core.timeparse import to_us
from app.reads.aggregates import Scope


@dataclass(frozen=True, slots=True)
class Target:
    """What one series of models describes: a device's (or site's aggregate) metric."""

    tenant: str
    scope: Scope
    key: str
    metric: str

    def args(self) -> tuple[str, str, str, str]:
        return self.tenant, self.scope, self.key, self.metric


@dataclass(frozen=True, slots=True)
class StoredModel:
    target: Target
    version: int
    step_s: int
    model: str
    fingerprint: str
    metadata: dict[str, Any]
    created_at_us: int
    size: int


# Versions count per target; taking the target's transaction lock first makes the
# max + 1 below safe against a training of the same target committing meanwhile.
LOCK = """
SELECT pg_advisory_xact_lock(
    hashtextextended(concat_ws(chr(31), $1::text, $2::text, $3::text, $4::text), 0)
)
"""

INSERT = """
INSERT INTO forecast_models (tenant_id, scope, key, metric, version, step_s, model,
                             fingerprint, artifact, metadata)
SELECT $1, $2, $3, $4, coalesce(max(version), 0) + 1, $5, $6, $7, $8, $9::jsonb
FROM forecast_models
WHERE tenant_id = $1 AND scope = $2 AND key = $3 AND metric = $4
RETURNING version, created_at, octet_length(artifact) AS size
"""

COLUMNS = (
    "tenant_id, scope, key, metric, version, step_s, model, fingerprint, metadata::text AS meta, "
    "created_at, octet_length(artifact) AS size"
)
TARGET = "tenant_id = $1 AND scope = $2 AND key = $3 AND metric = $4"

LATEST = f"SELECT {COLUMNS} FROM forecast_models WHERE {TARGET} ORDER BY version DESC LIMIT 1"
LATEST_AT_STEP = (
    f"SELECT {COLUMNS} FROM forecast_models WHERE {TARGET} AND step_s = $5"
    " ORDER BY version DESC LIMIT 1"
)
VERSION = f"SELECT {COLUMNS} FROM forecast_models WHERE {TARGET} AND version = $5"
ARTIFACT = f"SELECT artifact FROM forecast_models WHERE {TARGET} AND version = $5"
STEPS = f"""
SELECT step_s, array_agg(version ORDER BY version) AS versions
FROM forecast_models WHERE {TARGET} GROUP BY step_s ORDER BY step_s
"""
LIST = f"""
SELECT {COLUMNS} FROM forecast_models
WHERE tenant_id = $1 AND scope = $2 AND key = $3 AND ($4::text IS NULL OR metric = $4)
ORDER BY metric, version DESC LIMIT $5
"""


def _model(row: Mapping[str, Any]) -> StoredModel:
    return StoredModel(
        Target(row["tenant_id"], row["scope"], row["key"], row["metric"]),
        row["version"],
        row["step_s"],
        row["model"],
        row["fingerprint"],
        orjson.loads(row["meta"]),
        to_us(row["created_at"]),
        row["size"],
    )


async def insert_model(
    conn: asyncpg.Connection,
    target: Target,
    *,
    step_s: int,
    model: str,
    fingerprint: str,
    artifact: bytes,
    metadata: Mapping[str, Any],
) -> tuple[int, int, int]:
    """Store the next version of the target; (version, created_at_us, size). Run it in a
    transaction: the version lock is held until the commit."""
    await conn.execute(LOCK, *target.args())
    row = await conn.fetchrow(
        INSERT,
        *target.args(),
        step_s,
        model,
        fingerprint,
        artifact,
        orjson.dumps(metadata).decode(),
    )
    assert row is not None
    return row["version"], to_us(row["created_at"]), row["size"]


async def latest_model(
    conn: asyncpg.Connection, target: Target, step_s: int | None = None
) -> StoredModel | None:
    """The newest version (at that step, when given), without its artifact."""
    if step_s is None:
        row = await conn.fetchrow(LATEST, *target.args())
    else:
        row = await conn.fetchrow(LATEST_AT_STEP, *target.args(), step_s)
    return _model(row) if row is not None else None


async def get_model(conn: asyncpg.Connection, target: Target, version: int) -> StoredModel | None:
    row = await conn.fetchrow(VERSION, *target.args(), version)
    return _model(row) if row is not None else None


async def get_artifact(conn: asyncpg.Connection, target: Target, version: int) -> bytes | None:
    artifact: bytes | None = await conn.fetchval(ARTIFACT, *target.args(), version)
    return artifact


async def trained_steps(conn: asyncpg.Connection, target: Target) -> dict[int, list[int]]:
    """The steps the target has models at, with their versions."""
    rows = await conn.fetch(STEPS, *target.args())
    return {row["step_s"]: list(row["versions"]) for row in rows}


async def list_models(
    conn: asyncpg.Connection, tenant: str, scope: Scope, key: str, metric: str | None, limit: int
) -> list[StoredModel]:
    """A device's (or site's) versions, newest first per metric, without artifacts."""
    rows = await conn.fetch(LIST, tenant, scope, key, metric, limit)
    return [_model(row) for row in rows]
