"""API keys for the tests, made as `scripts.keys create` makes them."""

from datetime import datetime

import asyncpg

from app.auth import keys, queries
from app.core.settings import Settings


class Keys:
    def __init__(self, db: asyncpg.Connection, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def create(
        self,
        tenant: str,
        *,
        expires_at: datetime | None = None,
        rate_eps: float | None = None,
        burst: float | None = None,
    ) -> str:
        key, prefix = keys.generate()
        await queries.insert(
            self.db,
            prefix=prefix,
            key_hash=keys.digest(key, self.settings.api_key_pepper),
            tenant=tenant,
            name=f"test key of {tenant}",
            expires_at=expires_at,
            rate_eps=rate_eps,
            burst=burst,
        )
        return key

    async def revoke(self, key: str) -> None:
        prefix = keys.prefix_of(key)
        assert prefix is not None
        await queries.revoke(self.db, prefix)
