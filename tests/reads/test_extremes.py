"""Whatever the edge accepts, the workers store and the rollups aggregate into finite answers.

Values are drawn at and around every bound (0, the smallest and largest magnitudes the
contract allows, and past them), sent through the API, stored by a worker, rolled up by the
refresher, then read back through every aggregate endpoint.
"""

import math
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.settings import Settings
from app.ingest.contract import MAX_MAGNITUDE, MIN_MAGNITUDE
from tests.fixtures.worker import RunWorker
from tests.helpers import examples
from tests.reads import test_reads
from tests.reads.test_reads import reset_rollups
from workers.refresher import Refresher

api = test_reads.api
read_settings = test_reads.read_settings

BASE_MS = 1748772000000  # 2025-06-01T10:00:00Z
edges = st.sampled_from(
    [0.0, -0.0, MIN_MAGNITUDE, -MIN_MAGNITUDE, MAX_MAGNITUDE, -MAX_MAGNITUDE, 5e-324, 1e-101,
     1.1e100, 1e308, 2.2250738585072014e-308, 1.0, -1.0]
)  # fmt: skip
values = st.one_of(edges, st.floats(allow_nan=False, allow_infinity=False))


def finite(body: Any) -> bool:
    if isinstance(body, float):
        return math.isfinite(body)
    if isinstance(body, dict):
        return all(finite(v) for v in body.values())
    if isinstance(body, list):
        return all(finite(v) for v in body)
    return True


@settings(
    max_examples=examples(12),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    readings=st.lists(
        st.tuples(st.sampled_from(["d1", "d2"]), st.integers(0, 179), values, values),
        min_size=1,
        max_size=12,
    )
)
async def test_accepted_events_give_finite_aggregates(
    api: httpx.AsyncClient,
    db: asyncpg.Connection,
    run_worker: RunWorker,
    read_settings: Settings,
    readings: list[tuple[str, int, float, float]],
) -> None:
    await db.execute("TRUNCATE events, readings, device_status, rollup_dirty")
    await reset_rollups(db)
    tenant = f"x-{uuid.uuid4().hex[:8]}"
    events = [
        {
            "event_id": f"e{index}",
            "device_id": device,
            "site_id": "s1",
            "ts": BASE_MS + second * 1000,
            "metrics": {"power_w": power, "kwhDeliveredDc": power, "kwhConsumedAc": other},
        }
        for index, (device, second, power, other) in enumerate(readings)
    ]
    response = await api.post("/v1/events/batch", json=events, headers={"X-Tenant-ID": tenant})
    assert response.status_code == 202, response.text
    results = response.json()["results"]
    for result in results:
        assert result["status"] in ("accepted", "rejected")
        if result["status"] == "rejected":
            assert result["field"].startswith("metrics.")
    await run_worker()
    refresher = Refresher(
        read_settings.model_copy(update={"refresh_lag_s": 0}),
        clock=lambda: datetime.fromtimestamp(BASE_MS / 1000 + 3600, UTC),
    )
    try:
        assert (await refresher.round()).led
    finally:
        await refresher.close()
    assert await db.fetchval("SELECT count(*) FROM rollup_quarantine") == 0
    window = "from_time=2025-06-01T09:00:00Z&to_time=2025-06-01T11:00:00Z"
    for url in (
        f"/v1/metrics/aggregate?metric=power_w&device_id=d1&{window}&interval=1m",
        f"/v1/metrics/aggregate?metric=power_w&site_id=s1&{window}&interval=1h",
        "/sites/s1/agg?window=1m&from=2025-06-01T09:00:00Z&to=2025-06-01T11:00:00Z",
        "/v1/analytics/efficiency?site_id=s1&window=366d",
    ):
        answer = await api.get(url, headers={"X-Tenant-ID": tenant})
        assert answer.status_code == 200, (url, answer.text)
        assert finite(answer.json()), (url, answer.text)
