"""Aggregates: continuous aggregates on TimescaleDB, worker-maintained rollups without it.

Both paths expose the same relations with the same columns:
``readings_1m/1h/1d`` per (tenant, device, metric) and ``site_readings_1m/1h/1d`` per
(tenant, site, metric), each with count, sum, min, max and ``energy`` (the integral of the
per-minute mean, clamped at zero, in value-hours: Wh for a power metric in W); the site
rollups add ``peak`` (the highest one-minute total of the site's device means) and
``minutes`` (minutes with data). The time column is named for its level (minute, hour,
day): TimescaleDB refuses a third hierarchical level whose parent renames nothing.

Buckets are UTC and aligned to the Unix epoch on both paths (time_bucket's default origin
and the epoch agree for minutes, hours and days).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

from migrations.support import timescale_available

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Shared by both paths: the minutes each committed batch touched (written in the batch's
# transaction), the refresher's state, and the log of late refreshes the API caches read.
BOOKKEEPING = """
CREATE TABLE rollup_dirty (
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    minute      timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rollup_dirty_minute ON rollup_dirty (minute);

CREATE TABLE rollup_state (
    id           smallint    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    w1m           timestamptz,
    refreshed_at  timestamptz,
    -- When the oldest change still waiting below the watermark was committed.
    pending_since timestamptz
);
INSERT INTO rollup_state DEFAULT VALUES;

CREATE TABLE rollup_refresh_log (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lo           timestamptz NOT NULL,
    hi           timestamptz NOT NULL,
    refreshed_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO rollup_dirty (minute)
SELECT DISTINCT date_bin('1 minute', ts, timestamptz 'epoch') FROM readings;
"""

_BASIC = "value_count, value_sum, value_min, value_max, energy"
_ROLL = (
    "sum(value_count)::bigint AS value_count, sum(value_sum) AS value_sum,"
    " min(value_min) AS value_min, max(value_max) AS value_max, sum(energy) AS energy"
)
_RAW = (
    "count(*) AS value_count, sum(value) AS value_sum, min(value) AS value_min,"
    " max(value) AS value_max, greatest(sum(value) / count(*), 0) / 60 AS energy"
)
_SITE_FROM_DEVICES = f"{_ROLL}, sum(energy) * 60 AS peak, 1::bigint AS minutes"
_SITE_ROLL = f"{_ROLL}, max(peak) AS peak, sum(minutes)::bigint AS minutes"

# (relation, time column, source, source time column, width, key columns, aggregates, filter)
ROLLUPS = (
    (
        "readings_1m",
        "minute",
        "readings",
        "ts",
        "1 minute",
        "tenant_id, device_id, metric, site_id",
        _RAW,
        "",
    ),
    (
        "readings_1h",
        "hour",
        "readings_1m",
        "minute",
        "1 hour",
        "tenant_id, device_id, metric",
        _ROLL,
        "",
    ),
    (
        "readings_1d",
        "day",
        "readings_1h",
        "hour",
        "1 day",
        "tenant_id, device_id, metric",
        _ROLL,
        "",
    ),
    (
        "site_readings_1m",
        "minute",
        "readings_1m",
        "minute",
        "1 minute",
        "tenant_id, site_id, metric",
        _SITE_FROM_DEVICES,
        "site_id IS NOT NULL",
    ),
    (
        "site_readings_1h",
        "hour",
        "site_readings_1m",
        "minute",
        "1 hour",
        "tenant_id, site_id, metric",
        _SITE_ROLL,
        "",
    ),
    (
        "site_readings_1d",
        "day",
        "site_readings_1h",
        "hour",
        "1 day",
        "tenant_id, site_id, metric",
        _SITE_ROLL,
        "",
    ),
)

# Refresh policies (start offset, end offset, schedule) per width: the refresher covers
# late buckets outside the start offset, and the crossing of each coarser bucket.
POLICIES = {
    "1 minute": ("3 hours", "1 minute", "1 minute"),
    "1 hour": ("2 days", "1 hour", "30 minutes"),
    "1 day": ("7 days", "1 day", "1 hour"),
}

# Plain PostgreSQL: the watermark a view reads, per width. A coarser rollup's materialised
# part stops at the last whole bucket below the 1-minute watermark. A STABLE function rather
# than a subquery: the planner evaluates it when estimating, so a range next to it is costed
# from the statistics (a subquery's value is unknown at plan time, and its range gets a
# default selectivity that sent reads to the time index and to parallel scans).
WATERMARK_FUNCTION = """
CREATE FUNCTION rollup_watermark(width interval) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(date_bin(width, w1m, timestamptz 'epoch'), '-infinity') FROM rollup_state
$$
"""


def _select(
    time_col: str, source: str, source_time: str, width: str, keys: str, aggs: str, where: str
) -> str:
    bucket = f"date_bin('{width}', {source_time}, timestamptz 'epoch')"
    return (
        f"SELECT {bucket} AS {time_col}, {keys}, {aggs} FROM {source}"
        f" {where} GROUP BY {bucket}, {keys}"
    )


def _timescale() -> None:
    for relation, time_col, source, source_time, width, keys, aggs, where in ROLLUPS:
        # time_bucket comes first: TimescaleDB resolves a hierarchical parent's time column
        # by position, and a third level fails when it is not the first column.
        bucket = f"time_bucket(INTERVAL '{width}', {source_time})"
        filter_ = f"WHERE {where}" if where else ""
        op.execute(
            f"CREATE MATERIALIZED VIEW {relation} WITH (timescaledb.continuous, "
            "timescaledb.materialized_only = false) AS "
            f"SELECT {bucket} AS {time_col}, {keys}, {aggs} FROM {source} {filter_} "
            f"GROUP BY 1, {keys} WITH NO DATA"
        )
        key = keys if relation.startswith("site_") else keys.replace(", site_id", "")
        op.execute(f"CREATE INDEX {relation}_key ON {relation} ({key}, {time_col})")
        start, end, schedule = POLICIES[width]
        op.execute(
            f"SELECT add_continuous_aggregate_policy('{relation}', "
            f"start_offset => INTERVAL '{start}', end_offset => INTERVAL '{end}', "
            f"schedule_interval => INTERVAL '{schedule}')"
        )


def _plain() -> None:
    # Ids are bytewise (COLLATE "C") as in readings: a view over both keeps that collation,
    # so a key predicate on it can use the tables' indexes.
    # The refresher recomputes minutes by time range; TimescaleDB has this index already.
    op.execute("CREATE INDEX readings_ts ON readings (ts)")
    op.execute(WATERMARK_FUNCTION)
    for relation, time_col, source, source_time, width, keys, aggs, where in ROLLUPS:
        site = relation.startswith("site_")
        extra = ", peak double precision NOT NULL, minutes bigint NOT NULL" if site else ""
        key_columns = ",\n    ".join(
            f'{name} text COLLATE "C"' + ("" if name == "site_id" and not site else " NOT NULL")
            for name in keys.split(", ")
        )
        op.execute(
            f"""
            CREATE TABLE {relation}_mat (
                {time_col} timestamptz NOT NULL,
                {key_columns},
                value_count bigint NOT NULL,
                value_sum double precision NOT NULL,
                value_min double precision NOT NULL,
                value_max double precision NOT NULL,
                energy double precision NOT NULL{extra}
            )
            """
        )
        key = keys if site else keys.replace(", site_id", "")
        op.execute(f"CREATE INDEX {relation}_mat_key ON {relation}_mat ({key}, {time_col})")
        op.execute(f"CREATE INDEX {relation}_mat_time ON {relation}_mat ({time_col})")
        columns = f"{time_col}, {keys}, {_BASIC}" + (", peak, minutes" if site else "")
        watermark = f"rollup_watermark('{width}')"
        # The realtime part reads the source only past the watermark: raw rows for the
        # minute rollups of devices, the finer rollup (itself realtime) for the others.
        where_realtime = f"{source_time} >= {watermark}" + (f" AND {where}" if where else "")
        realtime = _select(
            time_col, source, source_time, width, keys, aggs, f"WHERE {where_realtime}"
        )
        op.execute(
            f"CREATE VIEW {relation} AS "
            f"SELECT {columns} FROM {relation}_mat WHERE {time_col} < {watermark} "
            f"UNION ALL {realtime}"
        )


def upgrade() -> None:
    op.execute(BOOKKEEPING)
    if timescale_available(op.get_bind()):
        _timescale()
    else:
        _plain()


def downgrade() -> None:
    use_timescale = timescale_available(op.get_bind())
    for relation, *_ in reversed(ROLLUPS):
        if use_timescale:
            op.execute(f"DROP MATERIALIZED VIEW IF EXISTS {relation}")
        else:
            op.execute(f"DROP VIEW IF EXISTS {relation}")
            op.execute(f"DROP TABLE IF EXISTS {relation}_mat")
    if not use_timescale:
        op.execute("DROP FUNCTION IF EXISTS rollup_watermark(interval)")
        op.execute("DROP INDEX IF EXISTS readings_ts")
    op.execute("DROP TABLE IF EXISTS rollup_refresh_log, rollup_state, rollup_dirty")
