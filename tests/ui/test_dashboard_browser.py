"""The dashboard in a real browser against a real stack: Debian's chromium driven by
playwright-core (web/e2e/dashboard.e2e.mjs) while this harness runs the API with keys, a
worker, the forecaster and the load generator, seeds a device's history and trains its
model, and raises an alert once the page's feed is live.

It checks that the charts have points for the chosen device (history, forecast with its
bands, site energy), that the alert raised during the test appears in the feed, that the
generator form round-trips and shows the server's message for a refused value, and it
saves results/dashboard.png.
"""

import asyncio
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.auth import keys
from app.auth import queries as key_queries
from app.core.settings import Settings, dsn
from scripts.stack import Stack, free_port, wait_http

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = ROOT / "results" / "dashboard.png"

TENANT = "default"  # the generator's first tenant, and the key's
DEVICE = "e2e-meter-1"
SITE = "e2e-site"
METRIC = "power_w"
PEPPER = "e2e-pepper"
STEP = "7m"  # no daily season at this step, so a few hours of history train a model
HISTORY_MINUTES = 300


def skip_reason() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is absent (apt-get install -y chromium)"
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node/npm are absent (install Node.js 20+ and npm)"
    if not (WEB / "dist" / "index.html").exists():
        return "web/dist is absent (make install builds it)"
    if not (WEB / "node_modules" / "playwright-core").exists():
        return "web/node_modules is absent (make install runs npm ci)"
    if shutil.which("redis-server") is None:
        return "redis-server is absent"
    return None


async def until(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    """Poll a condition until it holds; fail naming it past the deadline."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not within {seconds} s")


async def create_key(database_url: str) -> str:
    key, prefix = keys.generate()
    conn = await asyncpg.connect(dsn(database_url))
    try:
        await key_queries.insert(
            conn,
            prefix=prefix,
            key_hash=keys.digest(key, PEPPER),
            tenant=TENANT,
            name="dashboard-e2e",
            expires_at=None,
        )
    finally:
        await conn.close()
    return key


def history(now_s: int) -> list[dict[str, Any]]:
    """HISTORY_MINUTES of one meter, a minute apart, ending a minute before now."""
    events = []
    start = now_s // 60 * 60 - HISTORY_MINUTES * 60
    for i in range(HISTORY_MINUTES):
        ts = start + i * 60
        power = 1000 + 300 * math.sin(2 * math.pi * i / 60) + (i % 7) * 5
        events.append(
            {
                "event_id": f"e2e-history-{ts}",
                "device_id": DEVICE,
                "site_id": SITE,
                "ts": ts * 1000,
                "metrics": {
                    METRIC: round(power, 2),
                    "temp": round(25 + 3 * math.sin(i / 20), 2),
                    "kwhConsumedAc": round(power / 60_000, 5),
                    "kwhDeliveredDc": round(power * 0.9 / 60_000, 5),
                },
            }
        )
    return events


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")
async def test_the_dashboard_in_a_browser(settings: Settings, tmp_path: Path) -> None:
    key = await create_key(settings.database_url)
    forecast_port = free_port()
    env = {
        "DATABASE_URL": settings.database_url,
        "API_KEY_PEPPER": PEPPER,
        "TRUSTED_TENANT_HEADER": "false",
        "AUTH_DISABLED": "false",
        "FORECAST_URL": f"http://127.0.0.1:{forecast_port}",
        "REFRESH_INTERVAL_S": "1",
        "LOG_LEVEL": "WARNING",
    }
    async with Stack(tmp_path, env) as stack:
        # A private Redis with AOF: Pub/Sub channels are global across the machine's dbs.
        redis = stack.redis_child()
        await stack.start_redis(redis)
        stack.env["REDIS_URL"] = f"redis://127.0.0.1:{redis.port}/0"
        api = stack.api_child()
        # The generator names its tenant in X-Tenant-ID, as behind a gateway.
        gateway = stack.api_child(env={"TRUSTED_TENANT_HEADER": "true"})
        forecaster = stack.forecaster_child(forecast_port)
        await stack.start_http(api, 60)
        await stack.start_http(gateway, 60)
        stack.worker_child("e2e-worker").start()
        forecaster.start()
        base = f"http://127.0.0.1:{api.port}"
        auth = {"X-API-Key": key}

        async with httpx.AsyncClient(base_url=base, headers=auth, timeout=30) as client:
            seeded = history(int(time.time()))
            answer = await client.post("/v1/events/batch", json=seeded)
            assert answer.status_code == 202, answer.text
            assert answer.json()["accepted"] == len(seeded), answer.text
            first_ms, last_ms = seeded[0]["ts"], seeded[-1]["ts"] + 60_000
            window = {
                "device_id": DEVICE,
                "metric": METRIC,
                "from_time": first_ms,
                "to_time": last_ms,
                "interval": "1h",
            }

            async def stored() -> bool:
                r = await client.get("/v1/metrics/aggregate", params=window)
                return r.status_code == 200 and sum(b["count"] for b in r.json()["buckets"]) == len(
                    seeded
                )

            await until(stored, 90, "the seeded history stored and aggregated")

            # The forecaster: a model of the seeded history at a 7-minute step.
            await wait_http(forecaster, 180)
            trained = await client.post(
                f"http://127.0.0.1:{forecast_port}/train",
                params={
                    "device_id": DEVICE,
                    "metric": METRIC,
                    "step": STEP,
                    "from": first_ms,
                    "to": last_ms,
                },
                timeout=600,
            )
            assert trained.status_code == 201, trained.text
            predicted = await client.get(
                "/v1/forecast", params={"device_id": DEVICE, "metric": METRIC}
            )
            assert predicted.status_code == 200, predicted.text
            assert predicted.json()["points"], predicted.text

            # Live data from the load generator while the page is open.
            generator = stack.child(
                "generator",
                [
                    sys.executable,
                    "-m",
                    "scripts.generate",
                    "--url",
                    f"http://127.0.0.1:{gateway.port}",
                    "--rate",
                    "20",
                    "--duration",
                    "900",
                    "--devices",
                    "8",
                    "--tenants",
                    "1",
                    "--sites",
                    "2",
                    "--run-id",
                    "e2egen",
                    "--quiet",
                ],
            )
            generator.start()

            async def generated() -> bool:
                r = await client.get("/v1/devices", params={"q": "e2egen", "limit": 50})
                return r.status_code == 200 and len(r.json()["devices"]) > 0

            await until(generated, 90, "the generator's devices stored")

            browser = await asyncio.create_subprocess_exec(
                "node",
                str(WEB / "e2e" / "dashboard.e2e.mjs"),
                cwd=WEB,
                env={
                    **os.environ,
                    "DASHBOARD_URL": base,
                    "DASHBOARD_KEY": key,
                    "E2E_DEVICE": DEVICE,
                    "E2E_METRIC": METRIC,
                    "E2E_SCREENSHOT": str(SCREENSHOT),
                    "E2E_TIMEOUT_MS": "90000",
                },
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            assert browser.stdin is not None and browser.stdout is not None
            assert browser.stderr is not None
            errors = asyncio.create_task(browser.stderr.read())
            output: list[str] = []
            raised: dict[str, Any] = {}

            async def raise_alert() -> None:
                """A rule the page never wrote, then breaches of it until one has fired."""
                rule = await client.post(
                    "/v1/alerts",
                    json={"device_id": DEVICE, "metric": "temp", "op": ">", "threshold": 1000},
                )
                assert rule.status_code == 201, rule.text
                raised["rule_id"] = rule.json()["id"]
                assert browser.stdin is not None
                browser.stdin.write(f"{raised['rule_id']}\n".encode())
                await browser.stdin.drain()
                sent = 0

                async def fired() -> bool:
                    nonlocal sent
                    sent += 1
                    breach = {
                        "event_id": f"e2e-breach-{sent}",
                        "device_id": DEVICE,
                        "site_id": SITE,
                        "ts": int(time.time() * 1000),
                        "metrics": {"temp": 5000},
                    }
                    assert (await client.post("/v1/events", json=breach)).status_code == 202
                    h = await client.get(
                        "/v1/alerts/history", params={"rule_id": raised["rule_id"]}
                    )
                    return h.status_code == 200 and any(
                        a.get("rule_id") == raised["rule_id"] for a in h.json()["alerts"]
                    )

                await until(fired, 60, "the alert fired")

            alerting: asyncio.Task[None] | None = None
            try:
                while line := (await asyncio.wait_for(browser.stdout.readline(), 600)).decode():
                    output.append(line.strip())
                    if line.strip() == "feed-live":
                        alerting = asyncio.create_task(raise_alert())
                code = await asyncio.wait_for(browser.wait(), 60)
                if alerting is not None:
                    await alerting
            finally:
                if browser.returncode is None:
                    browser.kill()
                    await browser.wait()
            log = (await errors).decode(errors="replace")
            assert code == 0, f"{log[-6000:]}\n{output}"

    summary = json.loads(output[-1])
    assert summary["tenant"].endswith(TENANT)
    assert summary["aggregate_points"] > 0
    assert summary["forecast_history_points"] > 0
    assert summary["forecast_points"] > 0
    assert summary["energy_points"] > 0
    assert summary["status_rows"] >= 2  # the seeded meter and the generator's devices
    assert summary["pipeline"]["consumers"] >= 1
    assert summary["alert"]["rule_id"] == raised["rule_id"]
    assert summary["alert"]["device"] == DEVICE
    assert summary["alert"]["title"].endswith(" UTC")
    assert summary["generator"]["error"], summary
    assert SCREENSHOT.stat().st_size > 10_000
