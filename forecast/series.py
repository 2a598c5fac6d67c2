"""Turn a sensor's rollup buckets into a clean, regular series a model can be fitted on.

Pure numpy, no I/O and no statsforecast import: the API process can prepare and
fingerprint a series (to show its gaps, say) without paying for the model libraries.

The pipeline is `regularise` (points onto the epoch-aligned grid, holes as NaN), then
`prepare`: Hampel on the observed cells, then the gap policy (interpolate short holes,
fill medium ones from the daily profile, cut the history before a long one or fill it
when too little would remain), then the minimum length check.
"""

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

FloatArray = npt.NDArray[np.float64]
GapAction = Literal["interpolated", "cut", "filled"]

US_PER_S = 1_000_000
DAY_S = 86_400
# Holes up to this long are bridged by a straight line: a quarter of an hour of a
# slowly varying sensor is well described by its two ends.
DEFAULT_INTERPOLATE_S = 15 * 60
# Up to two hours the daily profile (adjusted to both edges) is a fair stand-in; beyond
# that the history before the hole is cut if enough remains.
DEFAULT_FILL_S = 2 * 3600
# 3.5 robust sigmas rather than the textbook 3: with an 11-15 cell window the MAD is
# itself noisy, and k=3 replaces ~1 % of ordinary noisy points (measured), k=3.5 ~0.5 %.
DEFAULT_HAMPEL_K = 3.5
# 1.4826 * MAD estimates the standard deviation of normal noise.
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True, eq=False)
class Series:
    """Values on a regular grid: cell i covers [start_us + i*step, start_us + (i+1)*step)."""

    start_us: int
    step_s: int
    values: FloatArray

    def __post_init__(self) -> None:
        if self.step_s <= 0:
            raise ValueError(f"step_s must be positive, got {self.step_s}")
        values = np.array(self.values, dtype=np.float64, copy=True)
        if values.ndim != 1:
            raise ValueError("values must be one-dimensional")
        # A frozen dataclass does not stop writes into the array; a read-only copy does,
        # so a fingerprint taken once stays true.
        values.flags.writeable = False
        object.__setattr__(self, "values", values)

    @property
    def step_us(self) -> int:
        return self.step_s * US_PER_S

    @property
    def end_us(self) -> int:
        """The end of the last cell (exclusive): where a forecast starts."""
        return self.start_us + len(self.values) * self.step_us

    def __len__(self) -> int:
        return len(self.values)

    def times_us(self) -> npt.NDArray[np.int64]:
        return self.start_us + np.arange(len(self.values), dtype=np.int64) * self.step_us

    def tail(self, first: int) -> "Series":
        """The cells from index `first` on."""
        return Series(self.start_us + first * self.step_us, self.step_s, self.values[first:])


@dataclass(frozen=True)
class Gap:
    """A run of missing cells [start_us, end_us) and what was done about it."""

    start_us: int
    end_us: int
    steps: int
    action: GapAction


@dataclass(frozen=True)
class Prepared:
    """A NaN-free series ready to fit, and what preparing it changed."""

    series: Series
    gaps: tuple[Gap, ...]
    outliers_replaced: int
    observed_points: int

    @property
    def filled_points(self) -> int:
        return sum(g.steps for g in self.gaps if g.action == "filled")


class TooLittleData(Exception):
    """Fewer observed points remain than a model needs."""

    def __init__(self, have_points: int, need_points: int) -> None:
        self.have_points = have_points
        self.need_points = need_points
        super().__init__(
            f"too little data to forecast: {have_points} observed points, need at least {need_points}"
        )


def season_length(step_s: int) -> int:
    """Steps per day, or 1 (no daily season) when the step does not divide a day."""
    if step_s <= 0 or DAY_S % step_s:
        return 1
    return DAY_S // step_s


def default_min_points(step_s: int) -> int:
    # Two seasons is the least a seasonal decomposition accepts; the floor keeps coarse
    # steps (no daily season) from fitting on a handful of points.
    return max(2 * season_length(step_s), 16)


def regularise(
    points: Sequence[tuple[int, float]], *, step_s: int, lo_us: int, hi_us: int
) -> Series:
    """Put (start_us, value) points on the epoch-aligned grid of cells meeting [lo_us, hi_us).

    Empty cells are NaN, non-finite values count as missing, points outside the range are
    dropped, and several points in one cell (a finer rollup) are averaged.
    """
    if step_s <= 0:
        raise ValueError(f"step_s must be positive, got {step_s}")
    if hi_us <= lo_us:
        raise ValueError(f"empty range [{lo_us}, {hi_us})")
    step_us = step_s * US_PER_S
    first = lo_us // step_us
    cells = -(-hi_us // step_us) - first
    if not points:
        return Series(first * step_us, step_s, np.full(cells, np.nan))
    raw = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    # Timestamps go through int64 on their own: float64 would round epoch microseconds.
    ts = np.fromiter((p[0] for p in points), dtype=np.int64, count=len(points))
    values = raw[:, 1]
    keep = (ts >= lo_us) & (ts < hi_us) & np.isfinite(values)
    index = ts[keep] // step_us - first
    sums = np.bincount(index, weights=values[keep], minlength=cells)
    counts = np.bincount(index, minlength=cells)
    out = np.full(cells, np.nan)
    np.divide(sums, counts, out=out, where=counts > 0)
    return Series(first * step_us, step_s, out)


def fingerprint(series: Series) -> str:
    """sha256 of the grid (step, start) and the exact float64 bytes (NaNs included)."""
    digest = hashlib.sha256()
    digest.update(b"series-v1")
    digest.update(np.array([series.step_s, series.start_us], dtype="<i8").tobytes())
    digest.update(np.ascontiguousarray(series.values, dtype="<f8").tobytes())
    return digest.hexdigest()


def _row_nanmedian(rows: FloatArray) -> FloatArray:
    """Median of each row ignoring NaNs (NaN for an all-NaN row), without warnings.

    np.nanmedian warns on all-NaN rows (an error under pytest) and is several times
    slower; sorting puts NaNs last, so the median sits at the middle of the valid prefix.
    """
    ordered = np.sort(rows, axis=1)
    count = np.count_nonzero(~np.isnan(rows), axis=1)
    has = count > 0
    lo = np.where(has, (count - 1) // 2, 0)
    hi = np.where(has, count // 2, 0)
    picked = np.arange(len(rows))
    median = 0.5 * (ordered[picked, lo] + ordered[picked, hi])
    return np.where(has, median, np.nan)


def hampel(
    values: FloatArray, *, half_window: int = 3, k: float = DEFAULT_HAMPEL_K
) -> tuple[FloatArray, int]:
    """Replace points further than k robust sigmas from their window's median by that median.

    Windows are centred, 2*half_window+1 cells, truncated at the ends and NaN-aware (NaNs
    stay NaN and do not vote). A step change survives because the median follows the
    majority side; an isolated spike is replaced. Returns the new values and the count.
    """
    if half_window < 1:
        raise ValueError("half_window must be at least 1")
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return x.copy(), 0
    windows = sliding_window_view(
        np.pad(x, half_window, constant_values=np.nan), 2 * half_window + 1
    )
    median = _row_nanmedian(windows)
    sigma = MAD_TO_SIGMA * _row_nanmedian(np.abs(windows - median[:, None]))
    # A window that is mostly one repeated value (a night of zeros, a quantised sensor)
    # has MAD 0, and a 7-point MAD is itself noisy: never trust a local scale below the
    # noise level of the whole series, estimated from its first differences. Exact
    # repeats are left out of that estimate: they say nothing about the noise.
    steps = np.diff(x[~np.isnan(x)])
    steps = steps[steps != 0]
    noise = MAD_TO_SIGMA * float(np.median(np.abs(steps))) / math.sqrt(2) if len(steps) else 0.0
    votes = np.count_nonzero(~np.isnan(windows), axis=1)
    outlier = (votes >= 3) & ~np.isnan(x) & (np.abs(x - median) > k * np.maximum(sigma, noise))
    cleaned = np.where(outlier, median, x)
    return cleaned, int(np.count_nonzero(outlier))


def _nan_runs(missing: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """(starts, ends) of the runs of True, ends exclusive."""
    edges = np.diff(np.concatenate(([False], missing, [False])).astype(np.int8))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def _daily_profile(values: FloatArray, season: int, offset: int) -> FloatArray:
    """Median of the observed values at each phase of the day (NaN where never seen)."""
    n = len(values)
    cycles = -(-(n + offset) // season)
    padded = np.full(cycles * season, np.nan)
    padded[offset : offset + n] = values
    return _row_nanmedian(padded.reshape(cycles, season).T)


def _fill_from_profile(
    values: FloatArray, start: int, end: int, profile: FloatArray, offset: int
) -> None:
    """Fill values[start:end] with the daily profile, shifted to meet both edges.

    Cell i is at phase (i + offset) mod season; the offset between the profile and the
    observed value just before and just after the hole is ramped linearly across it.
    """
    season = len(profile)
    phase = (np.arange(start - 1, end + 1) + offset) % season
    shape = profile[phase]
    if np.isnan(shape).any():
        _interpolate(values, start, end)
        return
    left = values[start - 1] - shape[0]
    right = values[end] - shape[-1]
    ramp = np.linspace(0.0, 1.0, end - start + 2)[1:-1]
    values[start:end] = shape[1:-1] + left + (right - left) * ramp


def _interpolate(values: FloatArray, start: int, end: int) -> None:
    ramp = np.linspace(0.0, 1.0, end - start + 2)[1:-1]
    values[start:end] = values[start - 1] + (values[end] - values[start - 1]) * ramp


def default_hampel_half_window(step_s: int) -> int:
    # About 1/16 of a day each side, 3 to 7 cells: wide enough for a stable MAD, narrow
    # enough that a sharp seasonal peak (a monthly series' July) is not an outlier.
    return min(7, max(3, season_length(step_s) // 16))


def prepare(
    series: Series,
    *,
    interpolate_steps: int | None = None,
    fill_steps: int | None = None,
    min_points: int | None = None,
    hampel_half_window: int | None = None,
    hampel_k: float = DEFAULT_HAMPEL_K,
) -> Prepared:
    """Clean a regularised series: Hampel, then the gap policy, then the length check.

    - Hampel runs first, on the observed cells only, so a spike next to a hole cannot be
      smeared into the hole by the interpolation that follows.
    - Leading and trailing holes are cut: nothing is invented before the first or after
      the last observation, so the forecast starts right after real data.
    - Holes of at most `interpolate_steps` cells (default: 15 minutes' worth, at least 1)
      are interpolated linearly ("interpolated").
    - Holes of at most `fill_steps` cells (default: 2 hours' worth, at least
      interpolate_steps) are filled from the median daily profile, shifted to meet both
      edges ("filled"): cutting days of history for a 20-minute outage costs more.
    - Longer holes: the history up to the latest one after which at least `min_points`
      observations remain is cut off ("cut"); long holes after that point are filled
      as above ("filled"; linear where the profile has no value).
    - TooLittleData when fewer than `min_points` observations remain (default: two days'
      worth, see default_min_points).
    """
    step = series.step_s
    need = default_min_points(step) if min_points is None else min_points
    short = (
        max(1, DEFAULT_INTERPOLATE_S // step) if interpolate_steps is None else interpolate_steps
    )
    medium = max(short, DEFAULT_FILL_S // step) if fill_steps is None else fill_steps
    half_window = (
        default_hampel_half_window(step) if hampel_half_window is None else hampel_half_window
    )
    values, replaced = hampel(series.values, half_window=half_window, k=hampel_k)
    values = values.copy()
    missing = np.isnan(values)
    observed = np.flatnonzero(~missing)
    if len(observed) < need:
        raise TooLittleData(len(observed), need)

    step_us = series.step_us

    def gap(start: int, end: int, action: GapAction) -> Gap:
        return Gap(
            series.start_us + start * step_us, series.start_us + end * step_us, end - start, action
        )

    starts, ends = _nan_runs(missing)
    # Observations at or after each cell, to ask "is the history after this hole enough?".
    after = np.cumsum((~missing)[::-1])[::-1]
    first, last = int(observed[0]), int(observed[-1]) + 1
    cut = first
    interior = [
        (int(s), int(e)) for s, e in zip(starts, ends, strict=True) if s > first and e < last
    ]
    for s, e in reversed(interior):
        if e - s > medium and after[e] >= need:
            cut = e
            break

    gaps: list[Gap] = []
    season = season_length(step)
    # The profile's phase: cell i is at (first cell of the day + i) mod season.
    offset = int((series.start_us // step_us) % season)
    profile: FloatArray | None = None
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if e <= cut or s >= last:
            gaps.append(gap(s, e, "cut"))
        elif e - s <= short:
            _interpolate(values, s, e)
            gaps.append(gap(s, e, "interpolated"))
        else:
            if profile is None and season > 1:
                profile = _daily_profile(values[cut:last], season, (offset + cut) % season)
            if profile is None:
                _interpolate(values, s, e)
            else:
                _fill_from_profile(values, s, e, profile, offset)
            gaps.append(gap(s, e, "filled"))
    kept = Series(series.start_us + cut * step_us, step, values[cut:last])
    have = int(after[cut])
    if have < need:
        raise TooLittleData(have, need)
    return Prepared(kept, tuple(gaps), replaced, have)
