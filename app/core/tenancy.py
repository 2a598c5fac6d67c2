"""Who the caller is: the one place a request's tenant is decided.

The app's state holds one `Tenants`: API keys (app/auth/service.py) by default;
`AUTH_DISABLED=true` puts every request in DEFAULT_TENANT (local demos: `make run` on a
loopback address); `TRUSTED_TENANT_HEADER=true` takes `X-Tenant-ID` as given (behind a
gateway that authenticates, and in the tests). Every route (TenantDep, IdentityDep) and the
lean ingest path ask the state's `Tenants`, so this is the only place that changes.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from app.core.errors import InvalidInput
from app.core.params import check_param
from app.core.settings import Settings

MAX_TENANT_LENGTH = 128


@dataclass(frozen=True, slots=True)
class Identity:
    """The caller: its tenant, and the ingest limits its key sets (None: the defaults)."""

    tenant: str
    rate_eps: float | None = None
    burst: float | None = None


class Tenants(Protocol):
    async def identify(self, headers: Mapping[str, str]) -> Identity: ...


def asks_for_key(settings: Settings) -> bool:
    """Whether callers must present an API key (neither AUTH_DISABLED nor a trusted header)."""
    return not (settings.auth_disabled or settings.trusted_tenant_header)


def tenant_of(headers: Mapping[str, str], settings: Settings) -> str:
    """The `X-Tenant-ID` header, checked (default DEFAULT_TENANT)."""
    value = headers.get("x-tenant-id")
    if value is None:
        return settings.default_tenant
    if not value:
        raise InvalidInput("must not be empty", field="X-Tenant-ID")
    if len(value) > MAX_TENANT_LENGTH:
        raise InvalidInput(f"must be at most {MAX_TENANT_LENGTH} characters", field="X-Tenant-ID")
    return check_param(value, "X-Tenant-ID")


class HeaderTenants:
    """No keys: every request in the default tenant, or the tenant its trusted header names."""

    def __init__(self, settings: Settings, *, trust_header: bool) -> None:
        self.settings = settings
        self.trust_header = trust_header

    async def identify(self, headers: Mapping[str, str]) -> Identity:
        if self.trust_header:
            return Identity(tenant_of(headers, self.settings))
        return Identity(self.settings.default_tenant)
