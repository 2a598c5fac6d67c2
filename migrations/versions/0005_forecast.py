"""Forecast models (versioned, immutable artifacts) and predicted-breach alert rules.

Every training adds one row to `forecast_models`: the artifact bytes forecast/models.py
wrote and the training record (window, step, fingerprint, scores, gaps, library versions)
as jsonb. The version counts per (tenant, scope, key, metric) and a row is never changed
afterwards (a trigger refuses updates), so a version names one set of predictions for good.

An alert rule may carry a forecast condition (`{"horizon_s", "bound"}`); the forecaster
evaluates those rules against the latest model, the workers skip them. A site rule's
predicted alert describes the site's aggregate and has no device, hence the nullable
alert_history.device_id.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
CREATE TABLE forecast_models (
    tenant_id   text COLLATE "C" NOT NULL,
    scope       text             NOT NULL,
    key         text COLLATE "C" NOT NULL,
    metric      text COLLATE "C" NOT NULL,
    version     integer          NOT NULL,
    step_s      integer          NOT NULL,
    model       text             NOT NULL,
    fingerprint text             NOT NULL,
    artifact    bytea            NOT NULL,
    metadata    jsonb            NOT NULL,
    created_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, scope, key, metric, version),
    CHECK (scope IN ('device', 'site')),
    CHECK (version >= 1),
    CHECK (step_s > 0)
);

CREATE FUNCTION forecast_models_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'forecast model versions are immutable: train a new version';
END
$$;
CREATE TRIGGER forecast_models_immutable BEFORE UPDATE ON forecast_models
    FOR EACH ROW EXECUTE FUNCTION forecast_models_immutable();

ALTER TABLE alert_rules ADD COLUMN forecast jsonb;
CREATE INDEX alert_rules_forecast ON alert_rules (tenant_id, metric)
    WHERE forecast IS NOT NULL AND deleted_at IS NULL;

ALTER TABLE alert_history ALTER COLUMN device_id DROP NOT NULL;
"""

DOWNGRADE = """
DELETE FROM alert_history WHERE device_id IS NULL;
ALTER TABLE alert_history ALTER COLUMN device_id SET NOT NULL;
DROP INDEX IF EXISTS alert_rules_forecast;
ALTER TABLE alert_rules DROP COLUMN IF EXISTS forecast;
DROP TABLE IF EXISTS forecast_models;
DROP FUNCTION IF EXISTS forecast_models_immutable();
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
