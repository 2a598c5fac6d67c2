"""The load generator's profile, kept in Redis per tenant so an operator can steer a running
generator (the API serves it; `scripts.generate` publishes and follows it).
"""

from datetime import UTC, datetime

import orjson
from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

from app.core.errors import InvalidInput
from app.core.keys import tenant_key


class GeneratorConfig(BaseModel):
    """The knobs of the seed-000 profile; defaults are that profile at 1,000 events/s."""

    model_config = ConfigDict(extra="forbid")

    rate: float = Field(default=1000.0, ge=0, le=1_000_000, description="events/s outside bursts")
    burst_multiplier: float = Field(default=10.0, ge=1, le=100)
    burst_seconds: float = Field(default=10.0, ge=0, le=3600, description="0 disables bursts")
    burst_every_s: float = Field(default=60.0, gt=0, le=86400)
    duplicate_rate: float = Field(default=0.0075, ge=0, le=0.5)
    out_of_order_rate: float = Field(default=0.02, ge=0, le=0.5)
    max_out_of_order_ms: int = Field(default=5000, ge=0, le=300_000)
    # Re-sends of an acknowledged (device, ts) with a new event id and new values: the
    # checker then proves latest-write-wins, not only dedupe.
    correction_rate: float = Field(default=0.002, ge=0, le=0.5)
    batch_size: int = Field(default=500, ge=1, le=5000)
    paused: bool = False
    # Read-only: set by the server on PUT, accepted back so a GET body can be PUT again.
    updated_at: str | None = None

    def check(self) -> "GeneratorConfig":
        """Cross-field rules, raised as InvalidInput naming the field."""
        if self.burst_seconds > self.burst_every_s:
            raise InvalidInput("must not exceed burst_every_s", field="burst_seconds")
        return self

    def knobs(self) -> dict[str, object]:
        """The fields that steer a generator (without the server's timestamp)."""
        return self.model_dump(exclude={"updated_at"})


def config_key(prefix: str, tenant: str) -> str:
    return tenant_key(prefix, tenant)


async def load_config(redis: Redis, prefix: str, tenant: str) -> GeneratorConfig:
    raw = await redis.get(config_key(prefix, tenant))
    if raw is None:
        return GeneratorConfig()
    return GeneratorConfig.model_validate(orjson.loads(raw))


async def save_config(
    redis: Redis, prefix: str, tenant: str, config: GeneratorConfig
) -> GeneratorConfig:
    stored = config.check().model_copy(
        update={"updated_at": datetime.now(UTC).isoformat(timespec="milliseconds")}
    )
    await redis.set(config_key(prefix, tenant), orjson.dumps(stored.model_dump()))
    return stored
