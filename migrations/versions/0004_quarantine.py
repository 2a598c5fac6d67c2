"""Rollup pieces the refresher could not build, kept where an operator (and the answers) see them.

A (minute, tenant, device, metric) whose rebuild the database refused is left out of the
rollups (plain PostgreSQL) or its minute is left unrefreshed (TimescaleDB: a continuous
aggregate refreshes whole buckets, so `whole_bucket` is set and every series of that
minute is flagged). The refresher moves on; the aggregate answers that cover a quarantined
piece say so.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE rollup_quarantine (
            id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            minute       timestamptz NOT NULL,
            tenant_id    text COLLATE "C" NOT NULL,
            device_id    text COLLATE "C" NOT NULL,
            site_id      text COLLATE "C",
            metric       text COLLATE "C" NOT NULL,
            whole_bucket boolean     NOT NULL DEFAULT false,
            error        text        NOT NULL,
            recorded_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX rollup_quarantine_minute ON rollup_quarantine (minute);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS rollup_quarantine")
