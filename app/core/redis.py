"""Redis clients, made by a factory inside lifespans, never at import."""

from redis.asyncio import Redis

from app.core.settings import Settings


def create_redis(settings: Settings) -> Redis:
    return Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=2,
        socket_timeout=10,
        health_check_interval=15,
    )
