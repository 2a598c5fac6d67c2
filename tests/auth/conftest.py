"""API keys on: these tests run the apps as a deployment does (tests/auth/keys.py)."""

import asyncpg
import pytest

from app.core.settings import Settings
from tests.auth.keys import Keys


@pytest.fixture
def key_settings(forecast_settings: Settings) -> Settings:
    return forecast_settings.model_copy(
        update={"trusted_tenant_header": False, "api_key_pepper": "test-pepper"}
    )


@pytest.fixture
async def keys(db: asyncpg.Connection, key_settings: Settings) -> Keys:
    await db.execute("TRUNCATE api_keys")
    return Keys(db, key_settings)
