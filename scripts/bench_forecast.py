"""Forecast benchmark: accuracy, interval coverage and timing of forecast/models.py.

    python -m scripts.bench_forecast [--origins 4] [--no-timing] [--out FILE.json]

Accuracy: rolling origins over held-out data; at each origin the service's path
(regularise -> prepare -> train -> predict) against the seasonal-naive baseline on the
same prepared history. Reported per dataset: the models chosen, MASE against seasonal
naive (pooled MAE ratio, so the baseline is 1), the classical MASE (MAE over the
in-sample seasonal-naive MAE) of both, and the empirical coverage of the 80 % and 95 %
intervals.

- Synthetic: the generator's sensor shapes (scripts/generate.py, re-implemented in numpy
  so the benchmark does not follow that module's restructuring): a meter's power (two
  daily harmonics, 4 % multiplicative noise), a solar inverter (the sun, a drifting
  cloud factor, zero at night) and a temperature; 7 days of 1-minute history with holes
  and spikes, the 5- and 15-minute versions being rollup averages of the same minutes.
  The truth to score against is the noisy signal without the injected holes and spikes.
- Real: AirPassengers (statsforecast.utils), Mauna Loa CO2 (statsmodels, weekly averaged
  to months, with its holes) and euro-area electrical equipment orders (statsmodels):
  monthly, put on a 2-hour grid so the "daily" season is the 12 months of a year.

Timing: training on 7 days of 1-minute data for one sensor and predicting 60 steps from a
stored artifact, cold (the first call in a fresh process) and warm (the second call),
and a cold training with and without a persistent NUMBA_CACHE_DIR.

Service path (--service, or --service-only; needs PostgreSQL and redis-server, e.g. under
`python -m scripts.services exec --`): a private Redis, the API, a worker (and its
refresher) and the forecaster as child processes on free ports, on a database of their
own (recreated: --database-url). The 7 days of 1-minute meter data go through the real
write path; then POST /train (cold: the first after the forecaster started; warm: the
second) and GET /predict of 60 steps from a stored version (cold: the first after a
restart; warm: an uncached version; cached: the same again), client-side wall times
beside the server's own. Predicting in-process is also set against a round trip through
the training pool, the alternative.

Prints a table; writes the JSON to results/ (git-ignored).
"""

import argparse
import asyncio
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from forecast.series import US_PER_S, Series, prepare, regularise

ROOT = Path(__file__).resolve().parent.parent
FloatArray = npt.NDArray[np.float64]
DAY = 86_400
MINUTES = 9 * 1440  # 7 days of history, then the origins within the next 2 days
T0 = 1_736_121_600 * US_PER_S  # 2025-01-06 00:00 UTC
HORIZON = 60
HISTORY_DAYS = 7


@dataclass
class Result:
    dataset: str
    step_s: int
    horizon: int
    origins: int
    chosen: dict[str, int] = field(default_factory=dict)
    mase_vs_naive: float = 0.0
    mase_model: float = 0.0
    mase_naive: float = 0.0
    coverage80: float = 0.0
    coverage95: float = 0.0
    naive_coverage80: float = 0.0
    naive_coverage95: float = 0.0
    train_s_mean: float = 0.0
    outliers_replaced: int = 0
    gaps: dict[str, int] = field(default_factory=dict)


# --- data -----------------------------------------------------------------------------------


def sensor_minutes(kind: str, seed: int) -> tuple[FloatArray, FloatArray]:
    """(truth, observed) at 1 minute: observed has holes (NaN) and spikes."""
    rng = np.random.default_rng(seed)
    t = np.arange(MINUTES) * 60.0
    hour = (t / 3600.0) % 24
    day = 2 * np.pi * hour / 24
    if kind == "meter":
        load = 0.55 + 0.3 * np.sin(day - 2 * np.pi * 7 / 24)
        load += 0.15 * np.sin(2 * day - 2 * np.pi * 14 / 24)
        truth = np.maximum(0.0, 4000 * load * (1 + rng.normal(0, 0.04, MINUTES)))
    elif kind == "solar":
        cloud = np.clip(0.75 + np.cumsum(rng.normal(0, 0.02, MINUTES)) * 0.05, 0.2, 1.0)
        elevation = np.where((hour > 6) & (hour < 18), np.sin(np.pi * (hour - 6) / 12), 0.0)
        truth = np.maximum(0.0, 8000 * elevation * cloud * (1 + rng.normal(0, 0.02, MINUTES)))
    else:
        truth = 16 + 7 * np.sin(day - 2 * np.pi * 9 / 24) + rng.normal(0, 0.3, MINUTES)
    observed = truth.copy()
    spikes = rng.choice(MINUTES, MINUTES // 1000, replace=False)
    observed[spikes] += rng.choice([-1, 1], len(spikes)) * (5 * np.std(truth) + 1)
    for start, length in zip(
        rng.integers(0, MINUTES - 200, 12), rng.integers(3, 30, 12), strict=True
    ):
        observed[start : start + length] = np.nan
    long_gap = int(rng.integers(DAY // 60, 4 * DAY // 60))  # one 3-hour outage, mid-history
    observed[long_gap : long_gap + 180] = np.nan
    return truth, observed


def rollup(values: FloatArray, factor: int) -> FloatArray:
    """The average of the minutes present in each bucket, as the rollups store it."""
    blocks = values.reshape(-1, factor)
    counts = np.count_nonzero(~np.isnan(blocks), axis=1)
    sums = np.nansum(blocks, axis=1)
    out = np.full(len(blocks), np.nan)
    np.divide(sums, counts, out=out, where=counts > 0)
    return out


def monthly_series() -> dict[str, FloatArray]:
    from statsforecast.utils import AirPassengers

    # statsmodels ships no type information; through importlib its modules are Any.
    co2 = importlib.import_module("statsmodels.datasets.co2")
    elec_equip = importlib.import_module("statsmodels.datasets.elec_equip")
    co2_weekly = co2.load_pandas().data["co2"]
    co2_monthly = co2_weekly.resample("MS").mean().to_numpy(dtype=np.float64)
    equip = elec_equip.load().data.iloc[:, 0].to_numpy(dtype=np.float64)
    return {
        "AirPassengers": np.asarray(AirPassengers, dtype=np.float64),
        "co2 (monthly)": co2_monthly,
        "elec_equip": equip,
    }


# --- accuracy ---------------------------------------------------------------------------------


def points(values: FloatArray, step_s: int) -> list[tuple[int, float]]:
    step_us = step_s * US_PER_S
    keep = np.flatnonzero(~np.isnan(values))
    return [(T0 + int(i) * step_us, float(values[i])) for i in keep]


def evaluate(
    name: str,
    truth: FloatArray,
    observed: FloatArray,
    step_s: int,
    horizon: int,
    origins: list[int],
    history: int,
) -> Result:
    from forecast.models import predict, train

    result = Result(name, step_s, horizon, len(origins))
    pts = points(observed, step_s)
    step_us = step_s * US_PER_S
    err_model: list[FloatArray] = []
    err_naive: list[FloatArray] = []
    scale_sum = 0.0
    inside = {"m80": 0, "m95": 0, "n80": 0, "n95": 0}
    seconds = 0.0
    total = 0
    for origin in origins:
        raw = regularise(
            pts,
            step_s=step_s,
            lo_us=T0 + (origin - history) * step_us,
            hi_us=T0 + origin * step_us,
        )
        prepared = prepare(raw)
        result.outliers_replaced += prepared.outliers_replaced
        for gap in prepared.gaps:
            result.gaps[gap.action] = result.gaps.get(gap.action, 0) + 1
        trained = train(prepared.series, horizon_steps=horizon)
        seconds += trained.train_seconds
        result.chosen[trained.model] = result.chosen.get(trained.model, 0) + 1
        baseline = train(prepared.series, horizon_steps=horizon, names=())
        first = (prepared.series.end_us - T0) // step_us
        actual = truth[first : first + horizon]
        known = ~np.isnan(actual)  # the real series have holes in their holdout too
        total += int(np.count_nonzero(known))
        y, m = prepared.series.values, trained.season_length
        scale_sum += float(np.mean(np.abs(y[m:] - y[:-m])))
        for key, artifact in (("m", trained.artifact), ("n", baseline.artifact)):
            f = predict(artifact, horizon_steps=horizon)
            (err_model if key == "m" else err_naive).append(np.abs(f.mean - actual)[known])
            a = actual[known]
            inside[key + "80"] += int(np.count_nonzero((f.lo80[known] <= a) & (a <= f.hi80[known])))
            inside[key + "95"] += int(np.count_nonzero((f.lo95[known] <= a) & (a <= f.hi95[known])))
    mae_model = float(np.mean(np.concatenate(err_model)))
    mae_naive = float(np.mean(np.concatenate(err_naive)))
    scale = scale_sum / len(origins)
    result.mase_vs_naive = mae_model / mae_naive if mae_naive else float("nan")
    result.mase_model = mae_model / scale
    result.mase_naive = mae_naive / scale
    result.coverage80 = inside["m80"] / total
    result.coverage95 = inside["m95"] / total
    result.naive_coverage80 = inside["n80"] / total
    result.naive_coverage95 = inside["n95"] / total
    result.train_s_mean = seconds / len(origins)
    return result


def accuracy(n_origins: int) -> list[Result]:
    results: list[Result] = []
    for kind, seed in (("meter", 1), ("solar", 2), ("temperature", 3)):
        truth, observed = sensor_minutes(kind, seed)
        for step in (60, 300, 900):
            factor = step // 60
            per_day = DAY // step
            # Origins every 6 hours from the end of the 7-day history.
            origins = [HISTORY_DAYS * per_day + k * per_day // 4 for k in range(n_origins)]
            results.append(
                evaluate(
                    f"{kind} {step // 60} min",
                    rollup(truth, factor),
                    rollup(observed, factor),
                    step,
                    HORIZON,
                    origins,
                    HISTORY_DAYS * per_day,
                )
            )
            print(table_row(results[-1]), flush=True)
    for name, values in monthly_series().items():
        n = len(values)
        origins = [n - 12 * k for k in (3, 2, 1)]  # the last three years, a year at a time
        results.append(evaluate(name, values, values, 7200, 12, origins, origins[0]))
        print(table_row(results[-1]), flush=True)
    return results


# --- timing -----------------------------------------------------------------------------------


def child(kind: str, path: Path) -> dict[str, float]:
    """One fresh process's measurements (runs in the child)."""
    started = time.perf_counter()
    import forecast.models as models

    out = {"import_forecast_models_s": time.perf_counter() - started}
    if kind == "train":
        series = Series(T0, 60, np.load(path))
        for label in ("cold", "warm"):
            started = time.perf_counter()
            trained = models.train(series, horizon_steps=HORIZON)
            out[f"train_{label}_s"] = time.perf_counter() - started
        path.with_suffix(".bin").write_bytes(trained.artifact)
        out["artifact_bytes"] = len(trained.artifact)
    elif kind == "predict":
        artifact = path.with_suffix(".bin").read_bytes()
        for label in ("cold", "warm"):
            started = time.perf_counter()
            models.predict(artifact, horizon_steps=HORIZON)
            out[f"predict_{label}_s"] = time.perf_counter() - started
    elif kind == "warmup":
        out["warm_up_s"] = models.warm_up()
        started = time.perf_counter()
        models.train(Series(T0, 60, np.load(path)), horizon_steps=HORIZON)
        out["train_after_warm_up_s"] = time.perf_counter() - started
    return out


def run_child(kind: str, path: Path, env: dict[str, str] | None = None) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "scripts.bench_forecast", "--child", kind, str(path)],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    )
    answer: dict[str, float] = json.loads(out.stdout.splitlines()[-1])
    return answer


def timing() -> dict[str, Any]:
    _, observed = sensor_minutes("meter", 1)
    raw = regularise(
        points(observed, 60), step_s=60, lo_us=T0, hi_us=T0 + HISTORY_DAYS * DAY * US_PER_S
    )
    series = prepare(raw).series
    out: dict[str, Any] = {"points": len(series)}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "series.npy"
        np.save(data, series.values)
        env = {"NUMBA_CACHE_DIR": str(Path(tmp) / "numba")}
        out["train"] = run_child("train", data)
        out["predict"] = run_child("predict", data)
        out["warmup"] = run_child("warmup", data)
        out["numba_cache_first"] = run_child("train", data, env)
        out["numba_cache_second"] = run_child("train", data, env)
        out["numba_cache_files"] = sum(1 for _ in (Path(tmp) / "numba").rglob("*"))
    out["numba_installed"] = importlib.util.find_spec("numba") is not None
    return out


# --- service path ----------------------------------------------------------------------------

BENCH_DATABASE = "postgresql://postgres@127.0.0.1:5432/telemetry_bench_fc"
SENSOR = "bench-meter-1"


def _iso(us: int) -> str:
    from app.core.timeparse import iso

    return iso(us)


async def _until(check: Callable[[], Any], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{what}: not within {seconds} s")


async def _ready(http: Any) -> bool:
    import httpx

    try:
        return bool((await http.get("/readyz")).status_code == 200)
    except httpx.TransportError:
        return False


async def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    response = await call()
    seconds = time.perf_counter() - started
    response.raise_for_status()
    return seconds, response.json()


async def service_timing(database_url: str, workdir: Path) -> dict[str, Any]:
    import asyncpg
    import httpx

    from app.core.settings import dsn
    from scripts.schema import recreate
    from scripts.stack import Stack, wait_http

    _, observed = sensor_minutes("meter", 1)
    minutes = HISTORY_DAYS * DAY // 60
    events = [
        {
            "event_id": f"bench-{i}",
            "device_id": SENSOR,
            "site_id": "bench-site",
            "ts": (T0 + i * 60 * US_PER_S) // 1000,
            "metrics": {"power_w": float(observed[i])},
        }
        for i in range(minutes)
        if not np.isnan(observed[i])
    ]
    recreate(database_url)
    out: dict[str, Any] = {"events": len(events)}
    env = {"DATABASE_URL": database_url, "REFRESH_MAX_MINUTES": "20000"}
    async with Stack(workdir, env) as stack:
        redis_child = stack.redis_child()
        await stack.start_redis(redis_child)
        stack.env["REDIS_URL"] = f"redis://127.0.0.1:{redis_child.port}/0"
        api = stack.api_child()
        await stack.start_http(api)
        stack.worker_child("bench-forecast-worker").start()
        conn = await asyncpg.connect(dsn(database_url))
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{api.port}", timeout=60
            ) as http:
                for first in range(0, len(events), 2000):
                    answer = await http.post("/v1/events/batch", json=events[first : first + 2000])
                    answer.raise_for_status()

            async def rolled_up() -> bool:
                stored = await conn.fetchval("SELECT count(*) FROM readings_1m_mat")
                dirty = await conn.fetchval("SELECT EXISTS (SELECT FROM rollup_dirty)")
                return bool(stored == len(events) and not dirty)

            await _until(rolled_up, 300, "the rollups hold every minute")

            forecaster = stack._uvicorn_child("forecast", "forecast.main:app", None, None)
            base = f"http://127.0.0.1:{forecaster.port}"
            async with httpx.AsyncClient(base_url=base, timeout=120) as http:
                started = time.perf_counter()
                forecaster.start()
                await wait_http(forecaster, 60)
                out["start_to_healthz_s"] = time.perf_counter() - started
                await _until(partial(_ready, http), 120, "the forecaster ready")
                out["start_to_ready_s"] = time.perf_counter() - started
                out["warm_up"] = (await http.get("/readyz")).json()["checks"]
                window = f"from={_iso(T0)}&to={_iso(T0 + HISTORY_DAYS * DAY * US_PER_S)}"
                query = f"/train?sensor_id={SENSOR}&step=1m&{window}"
                for label in ("cold", "warm"):
                    seconds, body = await _timed(partial(http.post, query))
                    out[f"train_{label}"] = {
                        "wall_s": seconds,
                        "server_s": body["seconds"],
                        "fit_s": body["train_seconds"],
                        "read_s": body["read_seconds"],
                        "model": body["model"],
                        "mase": body["score"]["mase"] if body["score"] else None,
                        "gaps": body["gaps"]["by_action"],
                        "artifact_bytes": body["artifact_bytes"],
                    }
            # A restart: the first prediction of a stored version in a fresh process.
            await forecaster.stop()
            async with httpx.AsyncClient(base_url=base, timeout=120) as http:
                forecaster.start()
                await wait_http(forecaster, 60)
                await _until(partial(_ready, http), 120, "the forecaster ready again")
                predict = f"/predict?sensor_id={SENSOR}&horizon=60m&step=1m&version="
                for label, version in (("cold", 1), ("warm", 2), ("cached", 1)):
                    seconds, body = await _timed(partial(http.get, predict + str(version)))
                    assert len(body["points"]) == HORIZON
                    out[f"predict_{label}_s"] = seconds
            artifact: bytes = await conn.fetchval(
                "SELECT artifact FROM forecast_models WHERE version = 1"
            )
        finally:
            await conn.close()
    out["predict_paths"] = await _predict_paths(artifact)
    return out


async def _predict_paths(artifact: bytes) -> dict[str, float]:
    """In this (warm) process against a round trip through a warm training pool."""
    from forecast.models import predict, warm_up
    from forecast.pool import TrainingPool

    warm_up()
    pool = TrainingPool(1, "spawn", max_queued=1)
    pool.start()
    await pool.wait_warm()
    out: dict[str, float] = {}
    try:
        for label in ("first", "second"):
            started = time.perf_counter()
            await asyncio.to_thread(predict, artifact, horizon_steps=HORIZON)
            out[f"in_process_{label}_s"] = time.perf_counter() - started
            started = time.perf_counter()
            await pool.run(_pool_predict, artifact, HORIZON)
            out[f"pool_{label}_s"] = time.perf_counter() - started
    finally:
        await pool.close()
    return out


def _pool_predict(artifact: bytes, horizon: int) -> int:
    from forecast.models import predict

    return len(predict(artifact, horizon_steps=horizon).mean)


# --- report -----------------------------------------------------------------------------------

HEADER = (
    f"{'dataset':<20} {'step':>6} {'h':>3} {'MASE/SN':>8} {'MASE':>6} {'SN MASE':>8} "
    f"{'cov80':>6} {'cov95':>6} {'SN80':>5} {'SN95':>5} {'train s':>8}  chosen"
)


def table_row(r: Result) -> str:
    step = f"{r.step_s // 60}m" if r.step_s != 7200 else "month"
    chosen = ", ".join(f"{k}x{v}" for k, v in sorted(r.chosen.items()))
    return (
        f"{r.dataset:<20} {step:>6} {r.horizon:>3} {r.mase_vs_naive:>8.3f} {r.mase_model:>6.2f} "
        f"{r.mase_naive:>8.2f} {r.coverage80:>6.2f} {r.coverage95:>6.2f} "
        f"{r.naive_coverage80:>5.2f} {r.naive_coverage95:>5.2f} {r.train_s_mean:>8.2f}  {chosen}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--origins", type=int, default=4, help="rolling origins per series")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_forecast.json")
    parser.add_argument("--no-timing", action="store_true", help="accuracy only")
    parser.add_argument("--service", action="store_true", help="also time the service path")
    parser.add_argument("--service-only", action="store_true", help="only the service path")
    parser.add_argument("--database-url", default=BENCH_DATABASE, help="recreated for --service")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return
    from forecast.models import library_versions

    report: dict[str, Any] = {"versions": library_versions(), "cpus": os.cpu_count()}
    if not args.service_only:
        print(HEADER, flush=True)
        results = accuracy(args.origins)
        times = {} if args.no_timing else timing()
        report |= {"accuracy": [asdict(r) for r in results], "timing": times}
        if times:
            print()
            for label, key in TIMING_ROWS:
                print(f"{label:<58} {key(times)}")
    if args.service or args.service_only:
        with tempfile.TemporaryDirectory() as tmp:
            service = asyncio.run(service_timing(args.database_url, Path(tmp)))
        report["service"] = service
        print()
        for label, key in SERVICE_ROWS:
            print(f"{label:<58} {key(service)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


def _s(*path: str) -> Callable[[dict[str, Any]], str]:
    def get(times: dict[str, Any]) -> str:
        value: Any = times
        for key in path:
            value = value[key]
        return f"{value:.3f} s" if isinstance(value, float) else str(value)

    return get


TIMING_ROWS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("import forecast.models (fresh process)", _s("train", "import_forecast_models_s")),
    ("train 7 d x 1 min (10,080 points), cold", _s("train", "train_cold_s")),
    ("train 7 d x 1 min, warm", _s("train", "train_warm_s")),
    ("artifact size (bytes)", _s("train", "artifact_bytes")),
    ("predict 60 steps from the artifact, cold", _s("predict", "predict_cold_s")),
    ("predict 60 steps, warm", _s("predict", "predict_warm_s")),
    ("warm_up() in a fresh process", _s("warmup", "warm_up_s")),
    ("train after warm_up()", _s("warmup", "train_after_warm_up_s")),
    ("train cold, NUMBA_CACHE_DIR empty", _s("numba_cache_first", "train_cold_s")),
    ("train cold, NUMBA_CACHE_DIR from the previous run", _s("numba_cache_second", "train_cold_s")),
    ("files in NUMBA_CACHE_DIR afterwards", _s("numba_cache_files")),
    ("numba installed", _s("numba_installed")),
]


SERVICE_ROWS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("events written (7 d x 1 min, with holes)", _s("events")),
    ("forecaster start -> /healthz", _s("start_to_healthz_s")),
    ("forecaster start -> /readyz (pool and predict warm)", _s("start_to_ready_s")),
    ("warm-up, pool process (s)", _s("warm_up", "training_pool", "warm_up_s")),
    ("warm-up, in-process for predict (s)", _s("warm_up", "predict", "warm_up_s")),
    ("POST /train, first after start (wall)", _s("train_cold", "wall_s")),
    ("  of which fitting in the pool", _s("train_cold", "fit_s")),
    ("  of which reading the rollups", _s("train_cold", "read_s")),
    ("POST /train, second (wall)", _s("train_warm", "wall_s")),
    ("  of which fitting in the pool", _s("train_warm", "fit_s")),
    (
        "model chosen, backtest MASE",
        lambda t: f"{t['train_cold']['model']}, {t['train_cold']['mase']:.3f}",
    ),
    ("GET /predict 60 steps, first after a restart", _s("predict_cold_s")),
    ("GET /predict 60 steps, another version (warm)", _s("predict_warm_s")),
    ("GET /predict 60 steps, cached", _s("predict_cached_s")),
    ("predict in-process, warm", _s("predict_paths", "in_process_second_s")),
    ("predict via the pool (round trip), warm", _s("predict_paths", "pool_second_s")),
]


if __name__ == "__main__":
    main()
