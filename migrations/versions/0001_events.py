"""Events, readings and device status; hypertables with compression and retention on TimescaleDB.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

from app.core.settings import get_settings
from migrations.support import timescale_available

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Identifiers compare bytewise (COLLATE "C"): they are ids, not prose, and every key
# comparison in the write path's index inserts and sorts gets cheaper for it.
TABLES = """
CREATE TABLE events (
    tenant_id   text COLLATE "C" NOT NULL,
    device_id   text COLLATE "C" NOT NULL,
    ts          timestamptz NOT NULL,
    event_id    text COLLATE "C" NOT NULL,
    site_id     text COLLATE "C",
    metrics     jsonb       NOT NULL,
    tags        text[]      NOT NULL DEFAULT '{}',
    seq         bigint      NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, device_id, ts)
);
CREATE INDEX events_event_id ON events (tenant_id, event_id);
CREATE INDEX events_tenant_ts ON events (tenant_id, ts DESC);
CREATE INDEX events_tags ON events USING gin (tags);

CREATE TABLE readings (
    tenant_id text COLLATE "C" NOT NULL,
    device_id text COLLATE "C" NOT NULL,
    metric    text COLLATE "C" NOT NULL,
    ts        timestamptz      NOT NULL,
    site_id   text COLLATE "C",
    value     double precision NOT NULL,
    seq       bigint           NOT NULL,
    PRIMARY KEY (tenant_id, device_id, metric, ts)
);
CREATE INDEX readings_site ON readings (tenant_id, site_id, metric, ts);

CREATE TABLE device_status (
    tenant_id  text COLLATE "C" NOT NULL,
    device_id  text COLLATE "C" NOT NULL,
    metric     text COLLATE "C" NOT NULL,
    ts         timestamptz      NOT NULL,
    value      double precision NOT NULL,
    site_id    text COLLATE "C",
    seq        bigint           NOT NULL,
    updated_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, device_id, metric)
);
"""


def upgrade() -> None:
    bind = op.get_bind()
    use_timescale = timescale_available(bind)
    if use_timescale:
        op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    op.execute(TABLES)
    if not use_timescale:
        return
    settings = get_settings()
    chunk = settings.chunk_interval
    for table, segment in (
        ("events", "tenant_id, device_id"),
        ("readings", "tenant_id, device_id, metric"),
    ):
        op.execute(
            f"SELECT create_hypertable('{table}', 'ts', chunk_time_interval => INTERVAL '{chunk}')"
        )
        op.execute(
            f"ALTER TABLE {table} SET (timescaledb.compress, "
            f"timescaledb.compress_segmentby = '{segment}', "
            "timescaledb.compress_orderby = 'ts DESC')"
        )
        op.execute(
            f"SELECT add_compression_policy('{table}', INTERVAL '{settings.compress_after}')"
        )
        op.execute(
            f"SELECT add_retention_policy('{table}', INTERVAL '{settings.retention_days} days')"
        )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS device_status, readings, events")
