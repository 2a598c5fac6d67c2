"""Alert rules, their per-tenant version counter, and alert history.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Rules are never updated in place: a delete keeps the row as a tombstone with a new
# version, so a worker syncing "versions above mine" sees deletions too. Every change takes
# the tenant's counter row first, so versions are handed out in commit order.
# The (rule, device) alert state lives in Redis, where one script makes each transition
# atomic; the history is written from the alert stream. The payload is json, not jsonb,
# so history shows each alert exactly as the stream clients received it.
TABLES = """
CREATE TABLE alert_rule_versions (
    tenant_id text   NOT NULL PRIMARY KEY,
    version   bigint NOT NULL
);

CREATE TABLE alert_rules (
    tenant_id       text             NOT NULL,
    rule_id         bigint           GENERATED ALWAYS AS IDENTITY,
    device_id       text,
    site_id         text,
    metric          text             NOT NULL,
    op              text             NOT NULL,
    threshold       double precision NOT NULL,
    clear_threshold double precision,
    for_s           double precision NOT NULL DEFAULT 0,
    cooldown_s      double precision NOT NULL DEFAULT 0,
    version         bigint           NOT NULL,
    created_at      timestamptz      NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    PRIMARY KEY (tenant_id, rule_id),
    CHECK (op IN ('>', '>=', '<', '<=', '==', '!=')),
    CHECK (device_id IS NULL OR site_id IS NULL),
    CHECK (for_s >= 0 AND cooldown_s >= 0)
);
CREATE INDEX alert_rules_version ON alert_rules (tenant_id, version);

CREATE TABLE alert_history (
    tenant_id   text             NOT NULL,
    alert_id    text             NOT NULL,
    alert_seq   bigint           NOT NULL,
    rule_id     bigint           NOT NULL,
    device_id   text             NOT NULL,
    site_id     text,
    metric      text             NOT NULL,
    state       text             NOT NULL,
    value       double precision NOT NULL,
    ts          timestamptz      NOT NULL,
    payload     json             NOT NULL,
    recorded_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, alert_id)
);
CREATE INDEX alert_history_device ON alert_history (tenant_id, device_id, ts);
CREATE INDEX alert_history_ts ON alert_history (tenant_id, ts);
"""


def upgrade() -> None:
    op.execute(TABLES)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS alert_history, alert_rules, alert_rule_versions")
