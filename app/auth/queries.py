"""The api_keys table: created, listed and revoked by `scripts.keys`, looked up per request."""

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True, slots=True)
class KeyRow:
    id: int
    prefix: str
    key_hash: bytes
    tenant_id: str
    name: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    rate_eps: float | None
    burst: float | None


_COLUMNS = (
    "id, prefix, key_hash, tenant_id, name, created_at, expires_at, revoked_at, rate_eps, burst"
)


def _row(record: asyncpg.Record) -> KeyRow:
    return KeyRow(**dict(record))


async def by_prefix(conn: asyncpg.Connection, prefix: str) -> KeyRow | None:
    record = await conn.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE prefix = $1", prefix)
    return _row(record) if record is not None else None


async def insert(
    conn: asyncpg.Connection,
    *,
    prefix: str,
    key_hash: bytes,
    tenant: str,
    name: str,
    expires_at: datetime | None,
    rate_eps: float | None = None,
    burst: float | None = None,
) -> KeyRow:
    record = await conn.fetchrow(
        "INSERT INTO api_keys (prefix, key_hash, tenant_id, name, expires_at, rate_eps, burst)"
        f" VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_COLUMNS}",
        prefix, key_hash, tenant, name, expires_at, rate_eps, burst,
    )  # fmt: skip
    assert record is not None
    return _row(record)


async def listing(conn: asyncpg.Connection, tenant: str | None) -> list[KeyRow]:
    if tenant is None:
        records = await conn.fetch(f"SELECT {_COLUMNS} FROM api_keys ORDER BY tenant_id, id")
    else:
        records = await conn.fetch(
            f"SELECT {_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY id", tenant
        )
    return [_row(r) for r in records]


async def revoke(conn: asyncpg.Connection, prefix: str) -> KeyRow | None:
    record = await conn.fetchrow(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE prefix = $1"
        f" RETURNING {_COLUMNS}",
        prefix,
    )
    return _row(record) if record is not None else None
