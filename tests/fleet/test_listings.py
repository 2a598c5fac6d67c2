"""GET /v1/devices and /v1/sites on data written through the ingest path."""

import httpx

from tests.fixtures.worker import RunWorker
from tests.helpers import post_batch
from tests.reads.test_reads import reading

A = {"X-Tenant-ID": "ta"}
B = {"X-Tenant-ID": "tb"}


async def _seed(client: httpx.AsyncClient, run_worker: RunWorker) -> None:
    client.headers.update(A)
    await post_batch(client, [
        reading("1", "Pump-1", "2025-06-01T10:00:00Z", site="north", power_w=100.0, temp=20.0),
        reading("2", "pump-2", "2025-06-01T10:01:00Z", site="north", power_w=200.0),
        reading("3", "fan_1", "2025-06-01T10:02:00Z", site="South", power_w=5.0),
        reading("4", "fan%1", "2025-06-01T10:03:00Z", site=None, temp=7.5),
        # Pump-1 moves to site south: its newest reading names its site.
        reading("5", "Pump-1", "2025-06-01T10:05:00Z", site="South", power_w=150.0),
    ])  # fmt: skip
    client.headers.update(B)
    await post_batch(client, [reading("6", "pump-b", "2025-06-01T10:00:00Z", site="north", x=1.0)])
    await run_worker()


async def test_devices_with_their_latest_values_by_id(
    client: httpx.AsyncClient, run_worker: RunWorker
) -> None:
    await _seed(client, run_worker)
    response = await client.get("/v1/devices", headers=A)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["truncated"] is False
    assert [d["device_id"] for d in body["devices"]] == ["Pump-1", "fan%1", "fan_1", "pump-2"]
    pump = body["devices"][0]
    assert pump == {
        "device_id": "Pump-1",
        "site_id": "South",
        "last_ts": "2025-06-01T10:05:00Z",
        "metrics": {"power_w": 150.0, "temp": 20.0},
    }
    assert body["devices"][1]["site_id"] is None


async def test_extreme_values_come_back_exactly(
    client: httpx.AsyncClient, run_worker: RunWorker
) -> None:
    client.headers.update(A)
    values = {"big": 1e100, "small": -1e-100, "odd": 0.1 + 0.2}
    event = {"event_id": "x", "device_id": "edge", "ts": "2025-06-01T10:00:00Z", "metrics": values}
    await post_batch(client, [event])
    await run_worker()
    response = await client.get("/v1/devices?q=edge", headers=A)
    assert response.json()["devices"][0]["metrics"] == values


async def test_device_search_is_a_case_insensitive_substring_with_literal_wildcards(
    client: httpx.AsyncClient, run_worker: RunWorker
) -> None:
    await _seed(client, run_worker)

    async def ids(q: str) -> list[str]:
        response = await client.get("/v1/devices", params={"q": q}, headers=A)
        assert response.status_code == 200, response.text
        return [d["device_id"] for d in response.json()["devices"]]

    assert await ids("PUMP") == ["Pump-1", "pump-2"]
    assert await ids("_") == ["fan_1"]
    assert await ids("%") == ["fan%1"]
    assert await ids("n_1") == ["fan_1"]
    assert await ids("\\") == []
    assert await ids("") == ["Pump-1", "fan%1", "fan_1", "pump-2"]


async def test_limits_truncate_and_are_checked(
    client: httpx.AsyncClient, run_worker: RunWorker
) -> None:
    await _seed(client, run_worker)
    two = (await client.get("/v1/devices?limit=2", headers=A)).json()
    assert [d["device_id"] for d in two["devices"]] == ["Pump-1", "fan%1"] and two["truncated"]
    assert (await client.get("/v1/devices?limit=4", headers=A)).json()["truncated"] is False
    for bad in ("0", "501", "x"):
        refused = await client.get(f"/v1/devices?limit={bad}", headers=A)
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "limit"
        assert (await client.get(f"/v1/sites?limit={bad}", headers=A)).status_code == 422
    assert (await client.get("/v1/devices?limit=500", headers=A)).status_code == 200
    one = (await client.get("/v1/sites?limit=1", headers=A)).json()
    assert one == {"sites": [{"site_id": "South", "devices": 2}], "truncated": True}


async def test_sites_count_devices_by_their_newest_site(
    client: httpx.AsyncClient, run_worker: RunWorker
) -> None:
    await _seed(client, run_worker)
    body = (await client.get("/v1/sites", headers=A)).json()
    assert body == {
        "sites": [{"site_id": "South", "devices": 2}, {"site_id": "north", "devices": 1}],
        "truncated": False,
    }
    searched = (await client.get("/v1/sites?q=SOU", headers=A)).json()["sites"]
    assert searched == [{"site_id": "South", "devices": 2}]


async def test_each_tenant_sees_only_its_own(
    client: httpx.AsyncClient, run_worker: RunWorker
) -> None:
    await _seed(client, run_worker)
    devices = (await client.get("/v1/devices?q=pump", headers=B)).json()["devices"]
    assert [d["device_id"] for d in devices] == ["pump-b"]
    sites = (await client.get("/v1/sites", headers=B)).json()["sites"]
    assert sites == [{"site_id": "north", "devices": 1}]
    empty = (await client.get("/v1/devices", headers={"X-Tenant-ID": "nobody"})).json()
    assert empty == {"devices": [], "truncated": False}
