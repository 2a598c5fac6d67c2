"""Regularising, gap policy, Hampel, too-little-data and fingerprints (pure numpy)."""

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecast.series import (
    Series,
    TooLittleData,
    default_min_points,
    fingerprint,
    hampel,
    prepare,
    regularise,
    season_length,
)

US = 1_000_000
HOUR = 3600
# 2023-11-14 22:00 UTC, a whole hour (so also a whole 15 minutes).
T0 = 1_699_999_200 * US


def daily(step_s: int, days: float, *, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    n = int(days * 86_400 // step_s)
    t = np.arange(n) * step_s
    rng = np.random.default_rng(seed)
    return 20 + 5 * np.sin(2 * np.pi * t / 86_400) + rng.normal(0, noise, n)


def points(values: np.ndarray, step_s: int, start_us: int = T0) -> list[tuple[int, float]]:
    return [(start_us + i * step_s * US, float(v)) for i, v in enumerate(values) if not np.isnan(v)]


# --- regularise -------------------------------------------------------------------------


def test_regularise_puts_points_on_the_epoch_grid_with_nan_holes() -> None:
    step = 300
    pts = [(T0, 1.0), (T0 + 600 * US, 3.0), (T0 + 900 * US, 4.0)]
    s = regularise(pts, step_s=step, lo_us=T0, hi_us=T0 + 1200 * US)
    assert s.start_us == T0 and s.step_s == step and len(s) == 4
    assert s.end_us == T0 + 1200 * US
    np.testing.assert_array_equal(s.values, [1.0, np.nan, 3.0, 4.0])
    assert s.times_us().tolist() == [T0 + i * step * US for i in range(4)]


def test_regularise_covers_an_unaligned_range_with_whole_cells() -> None:
    # [T0+100 s, T0+650 s) meets the cells starting at T0, T0+300 and T0+600.
    s = regularise([(T0 + 600 * US, 2.0)], step_s=300, lo_us=T0 + 100 * US, hi_us=T0 + 650 * US)
    assert s.start_us == T0 and len(s) == 3
    np.testing.assert_array_equal(s.values, [np.nan, np.nan, 2.0])


def test_regularise_drops_out_of_range_and_non_finite_and_averages_a_cell() -> None:
    pts = [
        (T0 - 60 * US, 99.0),  # before lo
        (T0, 1.0),
        (T0 + 30 * US, 3.0),  # same 60 s cell: averaged with the one above
        (T0 + 60 * US, float("nan")),
        (T0 + 120 * US, float("inf")),
        (T0 + 180 * US, 99.0),  # at hi: excluded
    ]
    s = regularise(pts, step_s=60, lo_us=T0, hi_us=T0 + 180 * US)
    np.testing.assert_array_equal(s.values, [2.0, np.nan, np.nan])


def test_regularise_with_no_points_is_all_nan_and_rejects_bad_arguments() -> None:
    s = regularise([], step_s=60, lo_us=T0, hi_us=T0 + 600 * US)
    assert len(s) == 10 and np.isnan(s.values).all()
    with pytest.raises(ValueError):
        regularise([], step_s=0, lo_us=T0, hi_us=T0 + 1)
    with pytest.raises(ValueError):
        regularise([], step_s=60, lo_us=T0, hi_us=T0)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 10_000), st.floats(-1e6, 1e6)), max_size=50),
    st.sampled_from([60, 300, 900]),
)
def test_regularise_every_point_lands_in_its_cell(raw: list[tuple[int, float]], step: int) -> None:
    pts = [(T0 + s * US, v) for s, v in raw]
    s = regularise(pts, step_s=step, lo_us=T0, hi_us=T0 + 10_001 * US)
    for ts, _ in pts:
        cell = (ts - s.start_us) // (step * US)
        assert not np.isnan(s.values[cell])
    assert np.count_nonzero(~np.isnan(s.values)) == len({(ts - T0) // (step * US) for ts, _ in pts})


def test_series_is_immutable() -> None:
    s = Series(T0, 60, np.array([1.0, 2.0]))
    with pytest.raises(ValueError):
        s.values[0] = 5.0
    with pytest.raises(ValueError):
        Series(T0, 0, np.array([1.0]))


# --- fingerprint ------------------------------------------------------------------------


def test_fingerprint_is_stable_and_sees_every_bit() -> None:
    values = np.array([1.0, np.nan, 2.5])
    s = Series(T0, 60, values)
    assert fingerprint(s) == fingerprint(Series(T0, 60, values.copy()))
    # A golden value: the fingerprint must not change between releases or machines.
    assert fingerprint(s) == GOLDEN
    assert fingerprint(Series(T0 + 60 * US, 60, values)) != GOLDEN
    assert fingerprint(Series(T0, 300, values)) != GOLDEN
    assert fingerprint(Series(T0, 60, np.nextafter(values, np.inf))) != GOLDEN


GOLDEN = "ec4836205e7b8309b5e400055f890d0ef306b5ab895fffebab3c7acf21e1a0d0"


# --- Hampel -----------------------------------------------------------------------------


def test_hampel_replaces_an_injected_spike_with_the_local_median() -> None:
    y = daily(900, 3, noise=0.2)
    y[100] += 40.0
    cleaned, replaced = hampel(y)
    assert replaced >= 1
    assert abs(cleaned[100] - np.median(y[97:104])) < 1e-12
    assert abs(cleaned[100] - y[99]) < 2.0


def test_hampel_keeps_a_step_change() -> None:
    rng = np.random.default_rng(1)
    y = np.concatenate([np.full(200, 10.0), np.full(200, 30.0)]) + rng.normal(0, 0.1, 400)
    cleaned, _ = hampel(y)
    np.testing.assert_array_equal(cleaned[195:205], y[195:205])


def test_hampel_on_a_clean_smooth_cycle_changes_nothing() -> None:
    y = daily(3600, 7)
    cleaned, replaced = hampel(y)
    assert replaced == 0
    np.testing.assert_array_equal(cleaned, y)


def test_hampel_with_a_zero_mad_window_does_not_flag_the_noise_floor() -> None:
    # Nights of exact zeros (a solar inverter), then noisy daytime: the zero-MAD windows
    # at dawn must not flag the first small readings.
    y = np.zeros(400)
    rng = np.random.default_rng(2)
    y[200:] = 0.5 + rng.normal(0, 0.2, 200).clip(-0.4, None)
    y[150] = 0.3
    _, replaced = hampel(y)
    assert replaced <= 2


def test_hampel_is_nan_aware() -> None:
    y = daily(900, 2)
    y[50:60] = np.nan
    y[70] += 30
    cleaned, replaced = hampel(y)
    assert np.isnan(cleaned[50:60]).all() and replaced == 1
    assert abs(cleaned[70] - y[69]) < 1.0


def test_hampel_on_a_week_of_minutes_takes_milliseconds() -> None:
    y = daily(60, 7, noise=0.5)
    assert len(y) == 10_080
    y[::997] += 100
    started = time.perf_counter()
    _, replaced = hampel(y, half_window=7)
    elapsed = time.perf_counter() - started
    assert replaced >= 10
    assert elapsed < 0.25, elapsed


# --- gaps ---------------------------------------------------------------------------------


def test_short_gap_is_interpolated_linearly() -> None:
    step = 300
    y = np.arange(700, dtype=np.float64)  # a straight line: interpolation is exact
    y[100:103] = np.nan  # 15 minutes at 5 minutes: short
    p = prepare(Series(T0, step, y), min_points=100)
    assert [(g.steps, g.action) for g in p.gaps] == [(3, "interpolated")]
    np.testing.assert_allclose(p.series.values, np.arange(700))
    assert p.observed_points == 697 and p.filled_points == 0
    gap = p.gaps[0]
    assert gap.start_us == T0 + 100 * step * US and gap.end_us == T0 + 103 * step * US


def test_long_gap_cuts_the_history_before_it_when_enough_remains() -> None:
    step = 900
    y = daily(step, 7)
    y[100:140] = np.nan  # 10 hours: long
    y[200:215] = np.nan  # 3.75 hours: long too, and later: the cut is here
    y[300:304] = np.nan  # 1 hour: filled from the profile
    y[400] = np.nan  # 15 minutes: interpolated
    p = prepare(Series(T0, step, y))
    assert [g.action for g in p.gaps] == ["cut", "cut", "filled", "interpolated"]
    assert p.series.start_us == T0 + 215 * step * US
    assert len(p.series) == len(y) - 215
    assert not np.isnan(p.series.values).any()


def test_a_medium_gap_is_filled_rather_than_cutting_days_of_history() -> None:
    step = 60
    truth = daily(step, 3)
    y = truth.copy()
    y[2000:2040] = np.nan  # 40 minutes: more than 15, less than 2 hours
    p = prepare(Series(T0, step, y))
    assert [(g.steps, g.action) for g in p.gaps] == [(40, "filled")]
    assert len(p.series) == len(y)
    np.testing.assert_allclose(p.series.values[2000:2040], truth[2000:2040], atol=1e-9)
    cut = prepare(Series(T0, step, y), fill_steps=30, min_points=2000)
    assert [g.action for g in cut.gaps] == ["cut"] and len(cut.series) == len(y) - 2040


def test_long_gap_is_filled_from_the_daily_profile_when_too_little_would_remain() -> None:
    step = 3600
    y = daily(step, 4)
    truth = y.copy()
    y[70:80] = np.nan  # a 10 h hole on day 3; after it only ~1.7 days remain
    p = prepare(Series(T0, step, y))
    assert [(g.steps, g.action) for g in p.gaps] == [(10, "filled")]
    assert p.filled_points == 10 and p.observed_points == len(y) - 10
    assert p.series.start_us == T0 and len(p.series) == len(y)
    # The profile of a pure daily cycle reproduces it; a straight line would not.
    np.testing.assert_allclose(p.series.values[70:80], truth[70:80], atol=1e-9)


def test_leading_and_trailing_holes_are_cut() -> None:
    step = 3600
    y = daily(step, 3)
    y[:5] = np.nan
    y[-2:] = np.nan
    p = prepare(Series(T0, step, y))
    assert [(g.steps, g.action) for g in p.gaps] == [(5, "cut"), (2, "cut")]
    assert p.series.start_us == T0 + 5 * step * US
    assert p.series.end_us == T0 + (len(y) - 2) * step * US
    np.testing.assert_array_equal(p.series.values, y[5:-2])


def test_too_little_data() -> None:
    step = 3600
    assert default_min_points(step) == 48 and season_length(step) == 24
    y = daily(step, 1.5)
    with pytest.raises(TooLittleData) as caught:
        prepare(Series(T0, step, y))
    assert (caught.value.have_points, caught.value.need_points) == (36, 48)
    assert "36" in str(caught.value) and "48" in str(caught.value)
    assert isinstance(caught.value, Exception)
    with pytest.raises(TooLittleData):
        prepare(Series(T0, step, np.full(100, np.nan)))
    assert len(prepare(Series(T0, step, y), min_points=30).series) == 36


def test_regularise_then_prepare_round_trip() -> None:
    step = 900
    y = daily(step, 3, noise=0.1)
    y[10] = np.nan
    y[50] += 30
    raw = regularise(points(y, step), step_s=step, lo_us=T0, hi_us=T0 + len(y) * step * US)
    p = prepare(raw)
    assert p.outliers_replaced >= 1 and len(p.series) == len(y)
    assert fingerprint(raw) != fingerprint(p.series)
