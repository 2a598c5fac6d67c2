"""Rollups: the query plan, the refresher, and property tests of every aggregate answer.

The property tests write random data through the ingest path (duplicates, replacements and
late readings included), refresh with the watermark somewhere inside the data, and check
that every answer meets the invariants, and equals a Python oracle once refreshed.
"""

import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.settings import Settings
from app.core.timeparse import US
from app.ingest.contract import MIN_MAGNITUDE
from app.reads.aggregates import LEVELS, Row, plan, to_bucket
from app.reads.cache import check_buckets
from tests.fixtures.worker import RunWorker
from tests.helpers import wait_for
from tests.reads import test_reads
from tests.reads.test_reads import reset_rollups
from workers.refresher import Refresher, crossed, runs

# The read API fixtures, shared with test_reads.
api = test_reads.api
read_settings = test_reads.read_settings

DAY = 86400
BASE_S = 1748736000  # 2025-06-01T00:00:00Z


@given(
    start=st.integers(0, 40 * DAY * US),
    span=st.integers(1, 9 * DAY * US),
    cell_s=st.sampled_from([None, 60, 120, 300, 3600, 5400, 7200, DAY, 7 * DAY]),
)
def test_plan_covers_the_range_exactly_with_whole_buckets_inside_one_cell(
    start: int, span: int, cell_s: int | None
) -> None:
    end = start + span
    pieces = sorted(plan(start, end, cell_s), key=lambda p: p.lo)
    assert len(pieces) <= 7
    position = start
    for piece in pieces:
        assert piece.lo == position and piece.lo < piece.hi
        position = piece.hi
        if piece.level is None:
            # Raw rows only where no whole minute fits.
            assert -(-piece.lo // (60 * US)) * 60 * US + 60 * US > piece.hi
        else:
            width = piece.level.seconds * US
            assert piece.lo % width == 0 and piece.hi % width == 0
            assert cell_s is None or cell_s % piece.level.seconds == 0
    assert position == end
    # The coarsest usable level answers whenever the range holds one of its buckets.
    usable = next(lv for lv in LEVELS if cell_s is None or cell_s % lv.seconds == 0)
    width = usable.seconds * US
    if -(-start // width) * width + width <= end:
        assert any(p.level == usable for p in pieces)


def test_refresher_windows_and_crossings() -> None:
    t0 = datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
    minute = timedelta(minutes=1)
    minutes = [t0, t0 + minute, t0 + 2 * minute, t0 + 5 * minute]
    assert runs(minutes, 60, 120) == [
        (t0, t0 + 2 * minute),
        (t0 + 2 * minute, t0 + 3 * minute),
        (t0 + 5 * minute, t0 + 6 * minute),
    ]
    # The watermark leaves hour 10 and day 1 is not crossed: hour 10 is rebuilt, no day.
    old, new = t0 + 30 * minute, t0 + 90 * minute
    assert crossed([t0 + 70 * minute], old, new, 3600) == [t0]
    assert crossed([t0 + 70 * minute], old, new, 86400) == []
    # A late minute in a closed hour is rebuilt; one past the new watermark's hour is not.
    assert crossed([t0 - 120 * minute, t0 + 95 * minute], new, new, 3600) == [t0 - 2 * 60 * minute]


@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=3).flatmap(
        lambda palette: st.lists(st.sampled_from(palette), min_size=1, max_size=40)
    )
)
def test_a_bucket_never_has_its_mean_outside_min_and_max(values: list[float]) -> None:
    # As PostgreSQL sums float8: in order, with plain rounding.
    total = 0.0
    for value in values:
        total += value
    row = Row(0, "m", len(values), total, min(values), max(values))
    check_buckets([to_bucket(row, (0, 60 * US))], 0, 60 * US)


async def test_a_closed_hour_and_day_are_built_when_the_watermark_leaves_them(
    api: httpx.AsyncClient, db: asyncpg.Connection, run_worker: RunWorker, read_settings: Settings
) -> None:
    await post(
        api,
        "default",
        [{"device_id": "d1", "site_id": "s1", "ts": "2025-06-01T10:05:00Z", "power_w": 60.0}],
    )
    await run_worker()
    clock = datetime(2025, 6, 1, 10, 30, tzinfo=UTC)
    refresher = Refresher(
        read_settings.model_copy(update={"refresh_lag_s": 0}), clock=lambda: clock
    )
    try:
        await refresher.round()  # minute 10:05 materialised; hour 10 is still open
        assert await db.fetchval("SELECT count(*) FROM readings_1h_mat") == 0
        clock = datetime(2025, 6, 3, tzinfo=UTC)
        await refresher.round()  # nothing changed since, but the watermark left hour 10 and day 1
    finally:
        await refresher.close()
    hours = await db.fetch("SELECT hour, value_count FROM readings_1h_mat")
    days = await db.fetch("SELECT day, energy, peak FROM site_readings_1d_mat")
    assert [(r["hour"].hour, r["value_count"]) for r in hours] == [(10, 1)]
    assert [(r["day"].day, r["energy"], r["peak"]) for r in days] == [(1, 1.0, 60.0)]


async def test_one_refresher_leads_and_it_runs_beside_the_workers(
    api: httpx.AsyncClient, db: asyncpg.Connection, run_worker: RunWorker, read_settings: Settings
) -> None:
    first, second = Refresher(read_settings), Refresher(read_settings)
    try:
        assert (await first.round()).led
        assert not (await second.round()).led
        await first.close()  # its session ends, and the lock with it
        assert (await second.round()).led
    finally:
        await first.close()
        await second.close()

    await post(
        api,
        "default",
        [{"device_id": "d1", "ts": "2025-06-01T10:05:00Z", "temp": 1.0}],
    )
    await run_worker()
    background = Refresher(read_settings.model_copy(update={"refresh_interval_s": 0.02}))

    async def caught_up() -> bool:
        return bool(
            await db.fetchval(
                "SELECT NOT EXISTS (SELECT FROM rollup_dirty)"
                " AND EXISTS (SELECT FROM readings_1m_mat WHERE device_id = 'd1')"
            )
        )

    async with background.running():
        await wait_for(caught_up)


# -- property tests through the ingest path ------------------------------------------------

Reading = tuple[str, str, int, float]  # device, site, ts (s), power_w

values = st.one_of(
    st.sampled_from([0.1, 0.3, 1e-3, 0.0, -5.0, 1234.5]),
    # Magnitudes below MIN_MAGNITUDE (subnormals among them) are refused at the edge (see
    # tests/ingest/test_hostile.py), so they are not drawn here.
    st.floats(min_value=-500, max_value=5000, allow_nan=False, allow_infinity=False).filter(
        lambda v: v == 0 or abs(v) >= MIN_MAGNITUDE
    ),
)
# Crowd readings into a few minutes and hours (near bucket edges) as often as not.
ANCHORS = (0, 59 * 60, 3600, DAY - 60, DAY + 7200, 2 * DAY + 1800)
offsets = st.one_of(
    st.integers(0, 3 * DAY - 1),
    st.builds(lambda anchor, s: anchor + s, st.sampled_from(ANCHORS), st.integers(0, 119)),
)


@st.composite
def readings(draw: st.DrawFn) -> list[Reading]:
    """A few devices and sites; values from a small palette, so buckets repeat a value."""
    palette = draw(st.lists(values, min_size=1, max_size=2))
    return draw(
        st.lists(
            st.tuples(
                st.sampled_from(["d1", "d1", "d2", "d3"]),
                st.sampled_from(["s1", "s1", "s2"]),
                offsets.map(lambda s: BASE_S + s),
                st.sampled_from(palette),
            ),
            min_size=4,
            max_size=40,
        )
    )


def oracle(final: dict[tuple[str, int], tuple[str, float]]) -> list[Reading]:
    return [(device, site, ts, value) for (device, ts), (site, value) in final.items()]


def expected_buckets(
    rows: list[Reading], key: tuple[int, str], lo: int, hi: int, cell: int
) -> dict[int, tuple[int, float, float, float]]:
    cells: dict[int, list[float]] = defaultdict(list)
    for device, site, ts, value in rows:
        if (device, site)[key[0]] == key[1] and lo <= ts * US < hi:
            cells[ts // cell * cell].append(value)
    return {c: (len(v), sum(v), min(v), max(v)) for c, v in cells.items()}


def expected_windows(
    rows: list[Reading], site: str, lo: int, hi: int, window: int
) -> dict[int, tuple[float, float, int]]:
    per_device: dict[tuple[int, str], list[float]] = defaultdict(list)
    for device, s, ts, value in rows:
        if s == site and lo <= ts * US < hi:
            per_device[(ts // 60 * 60, device)].append(value)
    totals: dict[int, float] = defaultdict(float)
    for (minute, _), vals in per_device.items():
        totals[minute] += max(sum(vals) / len(vals), 0.0)
    out: dict[int, tuple[float, float, int]] = {}
    for minute, total in sorted(totals.items()):
        start = minute // window * window
        energy, peak, count = out.get(start, (0.0, 0.0, 0))
        out[start] = (energy + total / 60, max(peak, total), count + 1)
    return out


def check_invariants(body: dict[str, Any], key: str) -> None:
    """The API's own invariants, asserted from the outside too."""
    lo, hi = body["from"], body["to"]
    cumulative = 0.0
    for item in body[key]:
        assert lo <= item["start"] < item["end"] <= hi
        if key == "buckets":
            assert item["count"] >= 1
            assert item["min"] <= item["avg"] <= item["max"]
        else:
            assert item["energy_wh"] >= 0
            assert item["cumulative_energy_wh"] >= cumulative
            cumulative = item["cumulative_energy_wh"]
            assert 0 <= item["avg_power_w"] <= item["peak_power_w"]


def seconds(iso_text: str) -> int:
    return int(datetime.fromisoformat(iso_text.replace("Z", "+00:00")).timestamp())


async def post(client: httpx.AsyncClient, tenant: str, events: list[dict[str, Any]]) -> list[str]:
    response = await client.post("/v1/events/batch", json=events, headers={"X-Tenant-ID": tenant})
    assert response.status_code == 202, response.text
    return [r["status"] for r in response.json()["results"]]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    first=readings(),
    late=readings(),
    duplicates=st.lists(st.integers(0, 24), max_size=4),
    cuts=st.lists(offsets, min_size=1, max_size=2),
    query=st.tuples(
        offsets,
        st.integers(1, 3 * DAY),
        st.sampled_from(["1m", "2m", "5m", "90m", "1h", "2h", "1d"]),
    ),
)
async def test_answers_meet_the_invariants_and_match_an_oracle(
    api: httpx.AsyncClient,
    db: asyncpg.Connection,
    run_worker: RunWorker,
    read_settings: Settings,
    first: list[Reading],
    late: list[Reading],
    duplicates: list[int],
    cuts: list[int],
    query: tuple[int, int, str],
) -> None:
    await db.execute("TRUNCATE events, readings, device_status")
    await reset_rollups(db)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    final: dict[tuple[str, int], tuple[str, float]] = {}

    def events(batch: list[Reading], tag: str) -> list[dict[str, Any]]:
        out = []
        for index, (device, site, ts, value) in enumerate(batch):
            out.append(
                {
                    "event_id": f"{tag}{index}",
                    "device_id": device,
                    "site_id": site,
                    "ts": ts * 1000,
                    "power_w": value,
                }
            )
        return out

    def apply(batch: list[Reading]) -> None:
        # Last write per (device, ts) wins, in ingest order.
        for device, site, ts, value in batch:
            final[(device, ts)] = (site, value)

    await post(api, tenant, events(first, "a"))
    apply(first)
    await run_worker()
    # The watermark stops inside the data (once or twice): part materialised, part realtime.
    clock = datetime.fromtimestamp(BASE_S, UTC)
    refresher = Refresher(
        read_settings.model_copy(update={"refresh_lag_s": 0}), clock=lambda: clock
    )
    try:
        for cut in sorted(cuts):
            clock = datetime.fromtimestamp(BASE_S + cut, UTC)
            assert (await refresher.round()).led
        # Late readings (below the watermark, some replacing), and redelivered duplicates.
        again = [events(first, "a")[i] for i in duplicates if i < len(first)]
        statuses = await post(api, tenant, events(late, "b") + again)
        assert statuses[len(late) :] == ["duplicate"] * len(again)
        apply(late)
        await run_worker()

        lo_s = BASE_S + query[0]
        hi_s = lo_s + query[1]
        rows = oracle(final)
        agg_url = "/v1/metrics/aggregate?metric=power_w&from_time={}&to_time={}&interval={}&{}={}"
        energy_url = "/sites/{}/agg?window={}&from={}&to={}"
        for refreshed in (False, True):
            if refreshed:
                clock = datetime.now(UTC)
                assert (await refresher.round()).led
                hi_s += 1  # a new cache key: the answer before the refresh may be cached
            for scope, key in (("device_id", "d1"), ("site_id", "s1")):
                response = await api.get(
                    agg_url.format(lo_s * 1000, hi_s * 1000, query[2], scope, key),
                    headers={"X-Tenant-ID": tenant},
                )
                assert response.status_code == 200, response.text
                body = response.json()
                check_invariants(body, "buckets")
                if refreshed:
                    cell = body["interval_s"]
                    want = expected_buckets(
                        rows, (0 if scope == "device_id" else 1, key), lo_s * US, hi_s * US, cell
                    )
                    got = {
                        seconds(b["start"]) // cell * cell: (
                            b["count"],
                            b["sum"],
                            b["min"],
                            b["max"],
                        )
                        for b in body["buckets"]
                    }
                    assert got.keys() == want.keys()
                    for c, values_ in want.items():
                        assert got[c] == pytest.approx(values_, rel=1e-9, abs=1e-6)
            response = await api.get(
                energy_url.format("s1", query[2], lo_s * 1000, hi_s * 1000),
                headers={"X-Tenant-ID": tenant},
            )
            if response.status_code == 422:
                assert response.json()["error"]["field"] == "to"  # no whole minute inside
                continue
            body = response.json()
            check_invariants(body, "windows")
            if refreshed:
                window = body["window_s"]
                expected = expected_windows(
                    rows, "s1", seconds(body["from"]) * US, seconds(body["to"]) * US, window
                )
                got_windows = {
                    seconds(w["start"]) // window * window: (
                        w["energy_wh"],
                        w["peak_power_w"],
                        w["avg_power_w"],
                    )
                    for w in body["windows"]
                }
                assert got_windows.keys() == expected.keys()
                for start, (energy, peak, count) in expected.items():
                    average = min(energy * 60 / count, peak)
                    assert got_windows[start] == pytest.approx(
                        (energy, peak, average), rel=1e-9, abs=1e-6
                    )
    finally:
        await refresher.close()
