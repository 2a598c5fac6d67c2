"""The forecaster as a service: train and predict over HTTP on data written through the real
write path, reproducibility across versions, restarts and processes, errors, the event
loop during a training, CORS, and the boundary with the API process.

Steps are coarse (15 minutes, 1 hour over 3 days) so each training takes well under a
second; the 1-minute figures are in scripts/bench_forecast.py.
"""

import asyncio
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml
from fastapi import FastAPI

from app.core.errors import Unavailable
from app.core.settings import Settings
from forecast import jobs
from forecast.main import create_app
from forecast.pool import TrainingPool
from scripts import dev
from tests.forecast import _blocking
from tests.forecast.service_fixtures import QUARTER, T0, Write, daily, iso, readings
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
DAYS3 = 3 * 96
WINDOW = f"from={iso(T0)}&to={iso(T0 + DAYS3 * QUARTER)}"


async def train(client: httpx.AsyncClient, query: str, status: int = 201) -> dict[str, Any]:
    response = await client.post(f"/train?{query}")
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def get(client: httpx.AsyncClient, url: str, status: int = 200) -> dict[str, Any]:
    response = await client.get(url)
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def error(body: dict[str, Any]) -> tuple[str, str]:
    return body["error"]["field"], body["error"]["message"]


async def test_train_and_predict_a_device_written_through_the_api(
    forecaster: httpx.AsyncClient, write: Write
) -> None:
    await write(readings("d1", daily(DAYS3)))
    trained = await train(forecaster, f"sensor_id=d1&step=15m&{WINDOW}")
    assert trained["version"] == 1 and trained["scope"] == "device"
    assert trained["sensor_id"] == "d1" and trained["metric"] == "power_w"
    assert trained["step"] == "15m" and trained["step_s"] == 900
    assert trained["window"] == {"from": iso(T0), "to": iso(T0 + DAYS3 * QUARTER)}
    assert len(trained["fingerprint"]) == 64
    assert trained["model"] in ("SeasonalNaive", "MSTL", "AutoETS", "Theta")
    score, baseline = trained["score"], trained["baseline"]
    assert baseline == {**baseline, "model": "SeasonalNaive", "mase": 1.0}
    assert score["model"] == trained["model"] and score["mase"] <= 1.0
    assert trained["gaps"]["count"] == 0 and trained["observed_points"] == DAYS3
    assert trained["train_seconds"] > 0 and trained["seconds"] >= trained["train_seconds"]
    assert trained["versions"]["statsforecast"]

    forecast = await get(forecaster, "/predict?sensor_id=d1&horizon=2h&step=15m")
    assert (forecast["version"], forecast["model"], forecast["step"]) == (
        1,
        trained["model"],
        "15m",
    )
    points = forecast["points"]
    assert [p["time"] for p in points] == [iso(T0 + (DAYS3 + i) * QUARTER) for i in range(8)]
    for p in points:
        assert p.keys() == {"time", "forecast", "lo80", "hi80", "lo95", "hi95"}
        assert p["lo95"] <= p["lo80"] <= p["forecast"] <= p["hi80"] <= p["hi95"]
    # The same model by its other names, and a partial last step counts whole.
    again = await get(forecaster, "/predict?device_id=d1&metric=power_w&horizon=100m")
    assert again["points"] == points[:7] and again["horizon"] == "105m"

    listed = await get(forecaster, "/models?sensor_id=d1")
    assert [(m["version"], m["metric"]) for m in listed["models"]] == [(1, "power_w")]
    assert listed["models"][0]["fingerprint"] == trained["fingerprint"]
    assert listed["models"][0]["artifact_bytes"] > 0

    # Scoped by tenant as the API is.
    other = {"X-Tenant-ID": "other"}
    response = await forecaster.get("/predict?sensor_id=d1", headers=other)
    assert response.status_code == 404
    assert (await get(forecaster, "/models?sensor_id=d1", 200))["models"]
    assert (await forecaster.get("/models?sensor_id=d1", headers=other)).json()["models"] == []


async def test_train_and_predict_a_site_aggregate_at_an_hourly_step(
    forecaster: httpx.AsyncClient, write: Write
) -> None:
    hours = 3 * 24
    hour = 4 * QUARTER
    one, two = daily(hours, per_day=24, level=100), daily(hours, per_day=24, level=300, seed=1)
    await write(readings("d1", one, step=hour) + readings("d2", two, step=hour))
    window = f"from={iso(T0)}&to={iso(T0 + hours * hour)}"
    trained = await train(forecaster, f"site_id=s1&step=1h&{window}")
    assert trained["scope"] == "site" and trained["site_id"] == "s1"
    assert trained["step"] == "1h" and trained["observed_points"] == hours
    forecast = await get(forecaster, "/predict?site_id=s1&horizon=6h")
    assert forecast["site_id"] == "s1" and forecast["step"] == "1h"
    assert len(forecast["points"]) == 6
    # The site's aggregate is the mean of its devices' readings (levels 100 and 300): the
    # next hour looks like the same hour a day earlier of that mean, not of either device.
    day_before = (one[48] + two[48]) / 2
    assert abs(forecast["points"][0]["forecast"] - day_before) < 50
    assert [m["version"] for m in (await get(forecaster, "/models?site_id=s1"))["models"]] == [1]
    # The device has no model of its own.
    missing = await get(forecaster, "/predict?sensor_id=d1", 404)
    assert error(missing) == (
        "sensor_id",
        "sensor 'd1' has never been trained for 'power_w': POST /train first",
    )


def hex_floats(values: list[float]) -> list[str]:
    return [struct.pack("<d", v).hex() for v in values]


PREDICT_CHILD = """
import struct, sys
from forecast.models import predict
f = predict(open(sys.argv[1], "rb").read(), horizon_steps=int(sys.argv[2]))
for band in (f.mean, f.lo80, f.hi80, f.lo95, f.hi95):
    print(" ".join(struct.pack("<d", v).hex() for v in band.tolist()))
"""


async def test_the_same_data_and_version_give_the_same_bits_everywhere(
    forecaster: httpx.AsyncClient,
    write: Write,
    forecast_settings: Settings,
    training_pool: TrainingPool,
    clean: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    await write(readings("d1", daily(DAYS3)))
    first = await train(forecaster, f"sensor_id=d1&step=15m&{WINDOW}")
    second = await train(forecaster, f"sensor_id=d1&step=15m&{WINDOW}")
    assert (first["version"], second["version"]) == (1, 2)
    assert first["fingerprint"] == second["fingerprint"]
    assert first["model"] == second["model"] and first["params"] == second["params"]
    artifacts = await clean.fetch("SELECT artifact FROM forecast_models ORDER BY version")
    assert artifacts[0]["artifact"] == artifacts[1]["artifact"]
    url = "/predict?sensor_id=d1&horizon=6h&version="
    one = (await get(forecaster, url + "1"))["points"]
    two = (await get(forecaster, url + "2"))["points"]
    assert one == two

    # A new lifespan (a restart): a new predictor with an empty cache, the same bits.
    restarted = create_app(forecast_settings, training=training_pool)
    async with restarted.router.lifespan_context(restarted):
        transport = httpx.ASGITransport(app=restarted)
        async with httpx.AsyncClient(transport=transport, base_url="http://forecast") as http:
            assert (await get(http, url + "1"))["points"] == one

    # Another interpreter, from the stored bytes alone.
    path = tmp_path / "artifact.bin"
    path.write_bytes(artifacts[0]["artifact"])
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PREDICT_CHILD,
        str(path),
        str(len(one)),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await child.communicate()
    assert child.returncode == 0
    lines = [line.split() for line in stdout.decode().splitlines()]
    bands = ("forecast", "lo80", "hi80", "lo95", "hi95")
    assert lines == [hex_floats([p[band] for p in one]) for band in bands]


async def test_gaps_are_reported_and_short_ones_filled(
    forecaster: httpx.AsyncClient, write: Write
) -> None:
    values: list[float | None] = list(daily(DAYS3 + 8))
    values[100] = None  # one step: interpolated
    values[150:154] = [None] * 4  # an hour: filled from the daily profile
    values[-8:] = [None] * 8  # a silent end: cut, nothing invented after the data
    await write(readings("d1", values))
    window = f"from={iso(T0)}&to={iso(T0 + (DAYS3 + 8) * QUARTER)}"
    trained = await train(forecaster, f"sensor_id=d1&step=15m&{window}")
    gaps = trained["gaps"]
    assert gaps["list"] == [
        {
            "from": iso(T0 + 100 * QUARTER),
            "to": iso(T0 + 101 * QUARTER),
            "steps": 1,
            "action": "interpolated",
        },
        {
            "from": iso(T0 + 150 * QUARTER),
            "to": iso(T0 + 154 * QUARTER),
            "steps": 4,
            "action": "filled",
        },
        {
            "from": iso(T0 + DAYS3 * QUARTER),
            "to": iso(T0 + (DAYS3 + 8) * QUARTER),
            "steps": 8,
            "action": "cut",
        },
    ]
    assert gaps["by_action"]["filled"] == {"gaps": 1, "steps": 4}
    assert trained["trained_on"] == {"from": iso(T0), "to": iso(T0 + DAYS3 * QUARTER)}
    assert trained["observed_points"] == DAYS3 - 5
    # The forecast starts right after the last real data, not at the end of the window.
    forecast = await get(forecaster, "/predict?sensor_id=d1&horizon=15m")
    assert forecast["points"][0]["time"] == iso(T0 + DAYS3 * QUARTER)


async def test_too_little_data_and_unknown_sensors_say_so(
    forecaster: httpx.AsyncClient, write: Write
) -> None:
    await write(readings("d1", daily(96)))
    little = await train(forecaster, f"sensor_id=d1&step=15m&{WINDOW}", 422)
    assert little["error"]["code"] == "too_little_data" and little["error"]["field"] == "from"
    assert (little["error"]["have_points"], little["error"]["need_points"]) == (96, 192)
    assert "96 observed steps of 15m" in little["error"]["message"]

    unknown = await train(forecaster, f"sensor_id=nope&step=15m&{WINDOW}", 404)
    assert error(unknown) == ("sensor_id", "sensor 'nope' has sent no 'power_w'")
    assert error(await get(forecaster, "/predict?sensor_id=nope", 404)) == (
        "sensor_id",
        "unknown sensor 'nope': it has sent no 'power_w'",
    )
    assert error(await get(forecaster, "/predict?sensor_id=d1&metric=temp", 404))[1] == (
        "unknown sensor 'd1': it has sent no 'temp'"
    )
    assert error(await get(forecaster, "/predict?sensor_id=d1", 404))[1] == (
        "sensor 'd1' has never been trained for 'power_w': POST /train first"
    )


@pytest.mark.parametrize(
    ("url", "field", "message"),
    [
        ("/predict?sensor_id=d1&horizon=soon", "horizon", "must be a duration"),
        ("/predict?sensor_id=d1&horizon=0", "horizon", "must be longer than zero"),
        ("/predict?sensor_id=d1&horizon=-5m", "horizon", "must be a duration"),
        ("/predict?sensor_id=d1&horizon=40d", "horizon", "must be at most 2880 steps of 15m"),
        ("/predict?sensor_id=d1&step=90s", "step", "must be a positive whole number of minutes"),
        ("/predict?sensor_id=d1&step=1m", "step", "trained steps: 15m (version 1)"),
        (
            "/predict?sensor_id=d1&step=1h&version=1",
            "step",
            "version 1 was trained at a step of 15m",
        ),
        ("/predict?sensor_id=d1&version=0", "version", "greater than or equal to 1"),
        ("/predict", "sensor_id", "give sensor_id (or device_id), or site_id"),
        ("/predict?sensor_id=d1&site_id=s1", "site_id", "give one of"),
    ],
)
async def test_bad_parameters_are_422_naming_them(
    forecaster: httpx.AsyncClient, write: Write, url: str, field: str, message: str
) -> None:
    await write(readings("d1", daily(DAYS3)))
    await train(forecaster, f"sensor_id=d1&step=15m&{WINDOW}")
    body = await get(forecaster, url, 422)
    assert body["error"]["field"] == field and message in body["error"]["message"], body


async def test_bad_training_parameters_are_422_naming_them(
    forecaster: httpx.AsyncClient, clean: asyncpg.Connection
) -> None:
    cases = [
        ("sensor_id=d1&step=0m", "step", "must be a positive whole number of minutes"),
        ("sensor_id=d1&step=2d", "step", "must be at most 1d"),
        ("sensor_id=d1&from=2025-02-01&to=2025-01-01", "to", "must be later than from"),
        ("sensor_id=d1&from=yesterday", "from", "must be epoch milliseconds or ISO 8601"),
        ("sensor_id=d1&step=1m&from=2025-01-01&to=2025-03-01", "from", "at most 50000"),
        ("sensor_id=d1&from=2025-01-01T00:00:10&to=2025-01-01T00:00:50", "to", "no whole step"),
    ]
    for query, field, message in cases:
        body = await train(forecaster, query, 422)
        assert body["error"]["field"] == field and message in body["error"]["message"], body
    unknown = await get(forecaster, "/predict?sensor_id=d1&version=3", 404)
    assert unknown["error"]["field"] == "sensor_id"


async def test_the_service_answers_while_a_training_runs(
    forecaster: httpx.AsyncClient,
    forecaster_app: FastAPI,
    write: Write,
    training_pool: TrainingPool,
    tmp_path: Path,
) -> None:
    await write(readings("d1", daily(DAYS3)))
    await train(forecaster, f"sensor_id=d1&step=15m&{WINDOW}")
    release = tmp_path / "release"
    # The one pool process is held, so the next training waits in the pool: from the
    # event loop's side, a training in progress for as long as the test wants.
    held = asyncio.create_task(training_pool.run(_blocking.hold_until, str(release)))
    training = asyncio.create_task(forecaster.post(f"/train?sensor_id=d1&step=15m&{WINDOW}"))
    try:
        await wait_for(lambda: _true(training_pool.running == 2))
        for _ in range(3):
            assert (await forecaster.get("/healthz")).status_code == 200
            answer = await forecaster.get("/predict?sensor_id=d1&horizon=1h&version=1")
            assert answer.status_code == 200
        assert not training.done()
        # Past the queue's bound a training is refused rather than queued.
        training_pool.max_queued = 1
        refused = await forecaster.post(f"/train?sensor_id=d1&step=15m&{WINDOW}")
        assert refused.status_code == 429 and refused.headers["Retry-After"]
    finally:
        training_pool.max_queued = 8
        release.touch()
    assert await held
    response = await training
    assert response.status_code == 201 and response.json()["version"] == 2


async def _true(value: bool) -> bool:
    return value


async def test_health_readiness_and_metrics(forecaster: httpx.AsyncClient) -> None:
    assert (await forecaster.get("/healthz")).json() == {"status": "ok"}

    async def ready() -> bool:
        return (await forecaster.get("/readyz")).status_code == 200

    await wait_for(ready, 30)
    checks = (await forecaster.get("/readyz")).json()["checks"]
    assert checks["database"] == "ok" and checks["redis"] == "ok"
    assert checks["training_pool"]["status"] == "warm"
    assert checks["predict"]["warm_up_s"] > 0
    metrics = (await forecaster.get("/metrics")).text
    assert "telemetry_forecast_warm_up_seconds" in metrics


async def test_cors_lets_the_dashboard_call_with_its_api_key(
    forecaster: httpx.AsyncClient,
) -> None:
    preflight = await forecaster.options(
        "/predict",
        headers={
            "Origin": "http://127.0.0.1:8000",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-api-key",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://127.0.0.1:8000"
    assert "x-api-key" in preflight.headers["access-control-allow-headers"].lower()
    simple = await forecaster.get(
        "/models?sensor_id=d1", headers={"Origin": "http://localhost:8000", "X-API-Key": "k"}
    )
    assert simple.headers["access-control-allow-origin"] == "http://localhost:8000"
    stranger = await forecaster.options(
        "/predict",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert stranger.status_code == 400
    assert "access-control-allow-origin" not in stranger.headers


def test_the_api_process_never_imports_the_forecaster() -> None:
    code = (
        "import sys, app.main, workers.consumer, workers.alerts\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('forecast', 'statsforecast'))\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_make_run_supervises_the_forecaster_next_to_the_api() -> None:
    args = dev.parse(["--port", "8200"])
    programs = {p.name: p.command for p in dev.programs(args)}
    command = programs["forecast"]
    assert command[command.index("-m") + 1 :][:2] == ["uvicorn", "forecast.main:app"]
    assert command[command.index("--port") + 1] == "8201"


def test_compose_runs_the_forecaster_with_a_healthcheck_and_no_volume() -> None:
    forecaster = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["forecaster"]
    assert forecaster["command"].split()[:2] == ["uvicorn", "forecast.main:app"]
    assert "--port 8001" in forecaster["command"] and forecaster["ports"] == ["8001:8001"]
    assert "/healthz" in " ".join(forecaster["healthcheck"]["test"])
    assert "volumes" not in forecaster
    assert forecaster["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


async def test_a_dead_training_process_fails_its_job_and_a_new_pool_serves() -> None:
    pool = TrainingPool(1, "spawn", max_queued=1)
    pool.start()
    try:
        with pytest.raises(Unavailable):
            await pool.run(_blocking.die)
        assert await pool.run(jobs.warmed) > 0  # a fresh process, warmed before its job
        assert pool.running == 0
    finally:
        await pool.close()
