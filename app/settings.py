"""The one settings object, read from the environment."""

from functools import lru_cache

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
    redis_url: str = "redis://127.0.0.1:6379/0"

    # Redis names; every key carries the tenant so per-tenant keys can come later.
    stream: str = "telemetry:events"
    group: str = "ingest"
    dead_letter_stream: str = "telemetry:dead"
    dedupe_prefix: str = "telemetry:seen"
    dedupe_window_s: int = Field(default=24 * 3600, ge=1)

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

    # Backpressure: 429 once the group's backlog passes either limit.
    backlog_max_entries: int = Field(default=20000, ge=1)
    backlog_max_age_s: float = Field(default=60.0, gt=0)
    backlog_check_interval_s: float = Field(default=0.25, ge=0)
    retry_after_s: int = Field(default=2, ge=1)

    # Workers.
    batch_entries: int = Field(default=200, ge=1)
    block_ms: int = Field(default=1000, ge=1)
    claim_idle_ms: int = Field(default=30000, ge=0)
    claim_interval_s: float = Field(default=5.0, gt=0)
    max_deliveries: int = Field(default=5, ge=1)
    trim_interval_s: float = Field(default=10.0, gt=0)
    forget_consumer_after_ms: int = Field(default=3_600_000, ge=0)
    db_retry_base_s: float = Field(default=0.2, gt=0)
    db_retry_max_s: float = Field(default=10.0, gt=0)
    statement_timeout_ms: int = Field(default=30000, ge=0)

    # Storage (applied by migrations when TimescaleDB is present).
    chunk_interval: str = "1 day"
    compress_after: str = "7 days"

    # Read API (issue 3): add read/aggregate/cache settings below this line.

    # Alerts (issue 4): add alert settings below this line.

    # Load generator (issue 5): add generator settings below this line.

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
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
