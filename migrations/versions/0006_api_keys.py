"""API keys: one or more per tenant, stored only as a keyed hash.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The prefix (random, shown with the key) finds the row; the HMAC of the whole key proves
    # it. Keys are never stored; a revoked or expired key keeps its row, so it answers 403.
    op.execute(
        """
        CREATE TABLE api_keys (
            id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            prefix      text COLLATE "C" NOT NULL UNIQUE,
            key_hash    bytea       NOT NULL,
            tenant_id   text COLLATE "C" NOT NULL,
            name        text        NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            expires_at  timestamptz,
            revoked_at  timestamptz,
            -- Per-key ingest limits; NULL takes TENANT_RATE_EPS / TENANT_BURST.
            rate_eps    double precision,
            burst       double precision
        );
        CREATE INDEX api_keys_tenant ON api_keys (tenant_id);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS api_keys")
