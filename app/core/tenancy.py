"""Who the caller is: the one place a request's tenant is decided.

Today the tenant is the `X-Tenant-ID` header (default DEFAULT_TENANT); API keys replace it
here, and every route (through TenantDep) and the lean ingest path follow.
"""

from collections.abc import Mapping

from app.core.errors import InvalidInput
from app.core.params import check_param
from app.core.settings import Settings

MAX_TENANT_LENGTH = 128


def tenant_of(headers: Mapping[str, str], settings: Settings) -> str:
    value = headers.get("x-tenant-id")
    if value is None:
        return settings.default_tenant
    if not value:
        raise InvalidInput("must not be empty", field="X-Tenant-ID")
    if len(value) > MAX_TENANT_LENGTH:
        raise InvalidInput(f"must be at most {MAX_TENANT_LENGTH} characters", field="X-Tenant-ID")
    return check_param(value, "X-Tenant-ID")
