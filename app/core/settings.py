"""The one settings object, read from the environment."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def async_url(url: str) -> str:
    """Normalise a PostgreSQL URL to the asyncpg driver form SQLAlchemy wants."""
    for prefix in (
        "postgresql+psycopg://",
        "postgresql+asyncpg://",
        "postgresql://",
        "postgres://",
    ):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"DATABASE_URL must be a postgresql:// URL, got {url!r}")


def sync_url(url: str) -> str:
    """The psycopg form of the same URL, for Alembic."""
    return "postgresql+psycopg://" + async_url(url)[len("postgresql+asyncpg://") :]


def dsn(url: str) -> str:
    """The libpq form of the same URL, for asyncpg and psql."""
    return "postgresql://" + async_url(url)[len("postgresql+asyncpg://") :]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = "postgresql://postgres@127.0.0.1:5432/telemetry"
    # A streaming replica for the read API and the forecaster's history (app/core/replica.py);
    # unset, every read goes to DATABASE_URL. Writes always go to DATABASE_URL.
    read_database_url: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Redis Cluster (app/core/shards.py): startup nodes, comma-separated ("redis://h:p,h:p").
    # Empty: the single Redis at REDIS_URL, as before. Set: the ingest stream is STREAM_SHARDS
    # streams, an event's by hash(tenant, device); fixed for the life of the data (a change
    # moves devices to other streams, whose ids need not order after the old ones).
    redis_cluster_url: str = ""
    stream_shards: int = Field(default=8, ge=1, le=1024)
    # The shards a worker consumes ("0,1,5" or "0-3"); empty: every shard.
    worker_shards: str = ""

    # Redis names; every key carries the tenant so per-tenant keys can come later.
    stream: str = "telemetry:events"
    group: str = "ingest"
    dead_letter_stream: str = "telemetry:dead"
    dead_letter_maxlen: int = Field(default=100_000, ge=100)
    dedupe_prefix: str = "telemetry:seen"
    dedupe_window_s: int = Field(default=24 * 3600, ge=1)

    # Who the caller is (app/core/tenancy.py): API keys unless one of these is set.
    auth_disabled: bool = False
    trusted_tenant_header: bool = False
    api_key_pepper: str = ""
    key_cache_ttl_s: float = Field(default=30.0, gt=0)
    key_cache_entries: int = Field(default=10_000, ge=1)
    # Fairness: each tenant's ingest, events/s with a burst (per API process; a key may set
    # its own), SSE connections and alert rules.
    tenant_rate_eps: float = Field(default=20_000.0, gt=0)
    tenant_burst: float = Field(default=40_000.0, gt=0)
    tenant_max_sse: int = Field(default=50, ge=1)
    tenant_max_rules: int = Field(default=1000, ge=1)

    # Ingest validation.
    default_tenant: str = "default"
    max_batch_events: int = Field(default=5000, ge=1)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_future_skew_s: int = Field(default=300, ge=0)
    # Ten years by default: the seed walkthroughs post events from 2025.
    retention_days: int = Field(default=3650, ge=1)
    max_name_length: int = Field(default=128, ge=1)
    max_tags: int = Field(default=64, ge=0)
    max_metrics: int = Field(default=256, ge=1)

    # Group commit: small requests of a tenant arriving within the window share one enqueue
    # (app/ingest/group.py); GROUP_MAX_EVENTS=1 turns it off. 0 shares the call among the
    # requests ready in one turn of the event loop: measured best here (a wider window adds
    # its wait to every request of a client that sends one at a time).
    group_window_ms: float = Field(default=0.0, ge=0, le=50)
    group_max_events: int = Field(default=500, ge=1)
    # The ingest routes answered by a plain ASGI path before FastAPI's routing (app/ingest/lean.py).
    lean_ingest: bool = True

    # Durability: ingest answers 503 on a queue below this level (app/core/durability.py).
    required_durability: Literal["volatile", "os-buffered", "fsync", "replicated"] = "os-buffered"
    # For demos and tests only: accept on a volatile or evicting queue, with a warning.
    allow_volatile_queue: bool = False
    durability_check_interval_s: float = Field(default=5.0, ge=0)
    # With `replicated`: how long the answer waits for a replica's acknowledgement.
    replica_wait_ms: int = Field(default=500, ge=1)

    # Backpressure: 429 once the group's backlog passes either limit.
    backlog_max_entries: int = Field(default=20000, ge=1)
    backlog_max_age_s: float = Field(default=60.0, gt=0)
    backlog_check_interval_s: float = Field(default=0.25, ge=0)
    retry_after_s: int = Field(default=2, ge=1)

    # Workers.
    batch_entries: int = Field(default=200, ge=1)
    # One transaction holds at most this many events and bytes, whatever the entries hold.
    batch_max_events: int = Field(default=5000, ge=1)
    batch_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    # Once entries arrive, wait up to this long for more before writing (0: never wait).
    batch_linger_ms: int = Field(default=20, ge=0)
    block_ms: int = Field(default=1000, ge=1)
    claim_idle_ms: int = Field(default=30000, ge=0)
    claim_interval_s: float = Field(default=5.0, gt=0)
    max_deliveries: int = Field(default=5, ge=1)
    trim_interval_s: float = Field(default=10.0, gt=0)
    forget_consumer_after_ms: int = Field(default=3_600_000, ge=0)
    db_retry_base_s: float = Field(default=0.2, gt=0)
    db_retry_max_s: float = Field(default=10.0, gt=0)
    statement_timeout_ms: int = Field(default=30000, ge=0)
    # Each worker refreshes a short-lived health key (arq style): /readyz lists the workers,
    # and which of them wait out a fault and why.
    worker_health_prefix: str = "telemetry:worker"
    worker_health_interval_s: float = Field(default=5.0, gt=0)

    # Storage (applied by migrations when TimescaleDB is present).
    chunk_interval: str = "1 day"
    compress_after: str = "7 days"

    # Read API (issue 3): add read/aggregate/cache settings below this line.
    read_default_limit: int = Field(default=100, ge=1)
    read_max_limit: int = Field(default=1000, ge=1)
    # OFFSET paging gets slower with depth; past this the cursor endpoints page instead.
    read_max_page_offset: int = Field(default=100_000, ge=0)
    aggregate_max_buckets: int = Field(default=10_000, ge=1)
    aggregate_max_interval_s: int = Field(default=366 * 86400, ge=60)
    power_metric: str = "power_w"
    # Seed 003: energy delivered (DC) over energy consumed (AC), each summed over the window.
    efficiency_dc_metric: str = "kwhDeliveredDc"
    efficiency_ac_metric: str = "kwhConsumedAc"
    efficiency_threshold_pct: float = Field(default=85.0, ge=0)
    cache_max_entries: int = Field(default=4096, ge=1)
    # Answers that reach past the rollup watermark live briefly; closed ones live long and
    # are evicted when the refresher logs a late refresh of their range.
    cache_ttl_recent_s: float = Field(default=5.0, gt=0)
    cache_ttl_closed_s: float = Field(default=600.0, gt=0)
    cache_sync_interval_s: float = Field(default=1.0, gt=0)
    refresh_enabled: bool = True
    refresh_interval_s: float = Field(default=5.0, gt=0)
    # Minutes newer than this stay realtime (read from raw rows), so on-time data is never late.
    refresh_lag_s: int = Field(default=60, ge=0)
    refresh_max_minutes: int = Field(default=720, ge=1)
    refresh_window_minutes: int = Field(default=1440, ge=1)
    # The stated bound: a late reading shows in every answer, cached or not, within this.
    late_data_bound_s: float = Field(default=30.0, gt=0)
    refresh_log_keep_s: float = Field(default=3600.0, gt=0)
    # Reads from READ_DATABASE_URL: its replay lag is sampled every READ_REPLICA_SAMPLE_S;
    # above READ_REPLICA_MAX_LAG_S (or unreachable) reads go to the primary, and come back
    # once the lag is under half the bound; an unreachable replica is re-checked every
    # READ_REPLICA_RECHECK_S. The probe and a replica connection give up after the timeout.
    read_replica_max_lag_s: float = Field(default=30.0, gt=0)
    read_replica_sample_s: float = Field(default=1.0, gt=0)
    read_replica_recheck_s: float = Field(default=5.0, gt=0)
    read_replica_timeout_s: float = Field(default=2.0, gt=0)

    # Alerts (issue 4): add alert settings below this line.
    alert_rules_channel: str = "telemetry:alerts:rules"
    alert_channel: str = "telemetry:alerts:live"
    alert_stream: str = "telemetry:alerts"
    alert_stream_maxlen: int = Field(default=100_000, ge=100)
    alert_history_group: str = "alert-history"
    alert_state_prefix: str = "telemetry:alert-state"
    # An idle (rule, device) state is forgotten after this; a new breach starts afresh.
    alert_state_ttl_s: int = Field(default=30 * 86400, ge=60)
    # A worker that missed a rule change over Pub/Sub converges within this period.
    alert_rule_sync_s: float = Field(default=2.0, gt=0)
    alert_history_batch: int = Field(default=500, ge=1)
    # Observations per call of the transition script: bounds how long one call holds Redis.
    alert_eval_chunk: int = Field(default=2000, ge=1)
    alert_max_duration_s: float = Field(default=7 * 86400, gt=0)
    alert_sse_queue: int = Field(default=1000, ge=1)
    alert_sse_heartbeat_s: float = Field(default=15.0, gt=0)
    alert_sse_send_timeout_s: float = Field(default=10.0, gt=0)
    alert_sse_retry_ms: int = Field(default=2000, ge=0)

    # Load generator (issue 5): add generator settings below this line.
    # The running generator's profile, one key per tenant (GET/PUT /v1/generator/config).
    generator_config_prefix: str = "telemetry:generator:config"

    # Forecaster (forecast/, `uvicorn forecast.main:app` on :8001): add forecaster settings
    # below this line.
    forecast_metric: str = "power_w"
    forecast_window_s: int = Field(default=7 * 86400, ge=60)
    forecast_step_s: int = Field(default=60, ge=60)
    forecast_horizon_s: int = Field(default=3600, ge=60)
    # Cells in one training window (7 days at 1 minute is 10,080) and steps in one forecast.
    forecast_max_points: int = Field(default=50_000, ge=100)
    forecast_max_horizon_steps: int = Field(default=2880, ge=1)
    # Steps each backtest fold forecasts; the model chosen is the best at this horizon.
    forecast_backtest_steps: int = Field(default=60, ge=1)
    # Training processes: each holds a warmed statsforecast (~250 MB) and a core while busy.
    forecast_workers: int = Field(default=1, ge=1, le=16)
    # Never fork: the parent holds an event loop, asyncpg and Redis connections.
    forecast_mp_context: Literal["spawn", "forkserver"] = "spawn"
    # Trainings waiting for a process beyond this are refused (429) rather than queued.
    forecast_max_queued: int = Field(default=8, ge=1)
    # Origins that may call the forecaster from a browser directly (the dashboard goes
    # through the API's GET /v1/forecast proxy instead).
    forecast_cors_origins: str = "http://127.0.0.1:8000,http://localhost:8000"
    forecast_alert_interval_s: float = Field(default=60.0, gt=0)
    forecast_alert_state_prefix: str = "telemetry:alert-predicted"

    # Dashboard (issue 12): add dashboard settings below this line.
    # The forecaster the API proxies GET /v1/forecast to (the API never imports forecast/).
    forecast_url: str = "http://127.0.0.1:8001"
    forecast_timeout_s: float = Field(default=10.0, gt=0)
    # The built front end served at / (`make install` builds it).
    web_dist: Path = Path(__file__).resolve().parents[2] / "web" / "dist"
    ui_max_points: int = Field(default=2000, ge=1)
    # Events accepted per second, fleet-wide: each API process adds what it accepted to
    # per-second counters in Redis every flush; GET /v1/pipeline averages the window.
    ingest_rate_prefix: str = "telemetry:ingest:accepted"
    ingest_rate_flush_s: float = Field(default=1.0, gt=0)
    ingest_rate_window_s: int = Field(default=30, ge=1, le=600)

    @field_validator("database_url", "read_database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if not value:
            return None  # READ_DATABASE_URL= (empty) is unset
        async_url(value)
        return value

    @property
    def async_database_url(self) -> str:
        return async_url(self.database_url)

    @property
    def sync_database_url(self) -> str:
        return sync_url(self.database_url)


@lru_cache
def get_settings() -> Settings:
    return Settings()
