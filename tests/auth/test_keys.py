"""API keys: the tenant comes from the key; 401, 403, revocation within the cache bound, no
secret in a log line; and one tenant flooding meets its own limit, not the others'."""

import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from app.core.settings import Settings
from app.main import create_app
from tests.auth.keys import Keys
from tests.helpers import event, wait_for

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
async def api(key_settings: Settings, db: asyncpg.Connection) -> AsyncIterator[FastAPI]:
    application = create_app(key_settings.model_copy(update={"key_cache_ttl_s": 0.2}))
    async with application.router.lifespan_context(application):
        yield application


def client(app: FastAPI, key: str | None = None) -> httpx.AsyncClient:
    headers = {"X-API-Key": key} if key else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t", headers=headers
    )


async def test_the_tenant_is_the_keys(api: FastAPI, keys: Keys, db: asyncpg.Connection) -> None:
    key = await keys.create("acme")
    async with client(api, key) as http:
        # Neither the header nor the body chooses the tenant.
        accepted = await http.post("/v1/events", json=event("e1"), headers={"X-Tenant-ID": "x"})
        moved = await http.post("/v1/events", json={**event("e2"), "tenant_id": "other"})
        same = await http.post("/v1/events", json={**event("e3"), "tenant_id": "acme"})
    assert accepted.status_code == 202 and same.status_code == 202
    assert moved.status_code == 422 and moved.json()["error"]["field"] == "tenant_id"


@pytest.mark.parametrize(
    "key", [None, "", "tk_nonsense", "tk_abcdefgh_notthesecret", "Bearer something"]
)
async def test_a_missing_or_unknown_key_is_a_401(api: FastAPI, keys: Keys, key: str | None) -> None:
    await keys.create("acme")
    async with client(api, key) as http:
        for response in (
            await http.post("/v1/events", json=event("e1")),
            await http.get("/v1/alerts"),
        ):
            assert response.status_code == 401, response.text
            assert response.json()["error"] == {
                "code": "unauthorized",
                "message": response.json()["error"]["message"],
                "field": "X-API-Key",
            }


async def test_revoked_and_expired_keys_are_a_403_within_the_cache_bound(
    api: FastAPI, keys: Keys
) -> None:
    key = await keys.create("acme")
    expired = await keys.create("acme", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    async with client(api, key) as http, client(api, expired) as old:
        assert (await http.get("/v1/alerts")).status_code == 200
        await keys.revoke(key)

        async def refused() -> bool:
            return (await http.get("/v1/alerts")).status_code == 403

        # KEY_CACHE_TTL_S is 0.2 s here: a revocation is seen within it.
        await wait_for(refused, seconds=5)
        gone = await http.get("/v1/alerts")
        assert gone.json()["error"] == {
            "code": "forbidden",
            "message": "the API key is revoked",
            "field": "X-API-Key",
        }
        late = await old.get("/v1/alerts")
        assert late.status_code == 403 and "expired" in late.json()["error"]["message"]


async def test_no_key_or_hash_reaches_a_log_line(
    api: FastAPI, keys: Keys, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    key = await keys.create("acme")
    stored = await db.fetchval("SELECT key_hash FROM api_keys")
    with caplog.at_level(logging.DEBUG):
        async with client(api, key) as http, client(api, key + "x") as wrong:
            await http.get("/v1/alerts")
            await keys.revoke(key)
            await wrong.get("/v1/alerts")
    text = "\n".join(record.getMessage() for record in caplog.records)
    secret = key.rsplit("_", 1)[1]
    assert secret not in text and stored.hex() not in text
    assert "unknown API key" in text  # the refusal is logged, by its public prefix only


async def test_a_flooding_tenant_meets_its_own_limit_and_the_others_keep_202(
    api: FastAPI, keys: Keys
) -> None:
    flood = await keys.create("flood", rate_eps=10, burst=20)
    calm = await keys.create("calm")
    async with client(api, flood) as noisy, client(api, calm) as quiet:
        first = await noisy.post("/v1/events/batch", json=[event(f"f{i}") for i in range(15)])
        over = await noisy.post(
            "/v1/events/batch", json=[event(f"g{i}", minute=i % 50) for i in range(15)]
        )
        others = [await quiet.post("/v1/events", json=event(f"c{i}", minute=i)) for i in range(30)]
    assert first.status_code == 202
    assert over.status_code == 429 and int(over.headers["Retry-After"]) >= 1
    assert over.json()["error"]["code"] == "rate_limited"
    assert [r.status_code for r in others] == [202] * 30


async def test_the_keys_script_creates_lists_and_revokes(
    key_settings: Settings, keys: Keys, api: FastAPI
) -> None:
    env = {"DATABASE_URL": key_settings.database_url, "API_KEY_PEPPER": "test-pepper",
           "PATH": "/usr/bin:/bin"}  # fmt: skip

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "scripts.keys", *args], cwd=ROOT, env=env,
            capture_output=True, text=True, check=True,
        )  # fmt: skip

    created = run("create", "--tenant", "acme", "--name", "ci", "--expires", "30d")
    key = created.stdout.strip()
    assert key.startswith("tk_") and "shown only now" in created.stderr
    listed = run("list", "--tenant", "acme").stdout
    assert key.split("_")[1] in listed and key not in listed and "active until" in listed
    async with client(api, key) as http:
        assert (await http.get("/v1/alerts")).status_code == 200
    run("revoke", key.split("_")[1])
    assert "revoked" in run("list").stdout
