"""Tenants from API keys (`X-API-Key`), verified once and kept in process for a short while.

A verified key (or a refusal) is cached for KEY_CACHE_TTL_S, so a revocation or an expiry
takes effect within that bound (30 s by default) in every API and forecaster process, and
a flood of bad keys costs one lookup each per bound, not one per request. Neither a key nor
its hash is ever logged: a refusal names only the key's public prefix.
"""

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from cachetools import TTLCache

from app.auth import keys, queries
from app.core.errors import Forbidden, Unauthorized
from app.core.settings import Settings
from app.core.tenancy import HeaderTenants, Identity, Tenants, asks_for_key

log = logging.getLogger("app.auth")


@dataclass(frozen=True, slots=True)
class _Verdict:
    identity: Identity | None
    # Why a key is refused: "unknown" (401) or "revoked"/"expired" (403).
    refusal: str | None
    expires_at: float | None


class KeyTenants:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.pepper = settings.api_key_pepper
        self._cache: TTLCache[bytes, _Verdict] = TTLCache(
            maxsize=settings.key_cache_entries, ttl=settings.key_cache_ttl_s, timer=clock
        )

    async def identify(self, headers: Mapping[str, str]) -> Identity:
        key = headers.get("x-api-key")
        if not key:
            raise Unauthorized("an API key is required in the X-API-Key header", field="X-API-Key")
        digest = keys.digest(key, self.pepper)
        verdict = self._cache.get(digest)
        if verdict is None:
            verdict = await self._verify(key, digest)
            self._cache[digest] = verdict
        if verdict.expires_at is not None and time.time() >= verdict.expires_at:
            verdict = _Verdict(None, "expired", None)
        if verdict.refusal == "unknown" or (verdict.identity is None and verdict.refusal is None):
            raise Unauthorized("the API key is not known", field="X-API-Key")
        if verdict.refusal is not None:
            raise Forbidden(f"the API key is {verdict.refusal}", field="X-API-Key")
        assert verdict.identity is not None
        return verdict.identity

    async def _verify(self, key: str, digest: bytes) -> _Verdict:
        prefix = keys.prefix_of(key)
        row = None
        if prefix is not None:
            async with self.pool.acquire() as conn:
                row = await queries.by_prefix(conn, prefix)
        if row is None or not keys.matches(key, row.key_hash, self.pepper):
            log.info("refused an unknown API key (prefix %r)", prefix)
            return _Verdict(None, "unknown", None)
        if row.revoked_at is not None:
            log.info("refused revoked API key %s of tenant %r", row.prefix, row.tenant_id)
            return _Verdict(None, "revoked", None)
        expires = row.expires_at.timestamp() if row.expires_at is not None else None
        if expires is not None and expires <= datetime.now(UTC).timestamp():
            return _Verdict(None, "expired", None)
        identity = Identity(row.tenant_id, row.rate_eps, row.burst)
        return _Verdict(identity, None, expires)


def create_tenants(settings: Settings, pool: asyncpg.Pool) -> Tenants:
    """The app's `Tenants`, by the settings (see app/core/tenancy.py)."""
    if not asks_for_key(settings):
        if settings.auth_disabled:
            log.warning(
                "AUTH_DISABLED=true: every request is tenant %r, no key asked (local demos only)",
                settings.default_tenant,
            )
        return HeaderTenants(settings, trust_header=settings.trusted_tenant_header)
    return KeyTenants(pool, settings)
