"""Fit and predict per-sensor statsforecast models on numpy arrays.

statsforecast (and pandas, statsmodels, scipy behind it) is imported inside the functions
that need it, never at import time: the API process imports this module for its types
and only the training worker pays the ~2 s import.

Candidates depend on the step (see `candidates`); one is chosen per series by a
rolling-origin backtest scored by MASE against the seasonal-naive baseline, then refitted
on the whole series and stored as an artifact (a versioned header and a pickle).
"""

import hashlib
import importlib.metadata
import io
import json
import math
import pickle
import platform
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, TypedDict

import numpy as np
import numpy.typing as npt

from forecast.series import US_PER_S, FloatArray, Series, fingerprint, season_length

FORMAT_VERSION: Final = 1
MAGIC: Final = b"TLMFCST\x00"
LEVELS: Final = (80, 95)
DEFAULT_FOLDS: Final = 3
# Seasonal ETS is limited to seasons of at most 24 in statsforecast (it returns no fit
# beyond); a longer daily season goes to MSTL and ETS sees only level and trend.
ETS_MAX_SEASON: Final = 24
# Theta's classical decomposition costs 5-7 s per fit at a 1-minute step (season 1,440)
# and 0.3 s at 5 minutes: it is a candidate from 5-minute steps up.
THETA_MAX_SEASON: Final = 288
# Libraries whose objects are inside the pickle: a different major version refuses it.
PICKLED_LIBRARIES: Final = ("statsforecast", "numpy", "pandas")

JSON = dict[str, Any]


class Score(TypedDict):
    """One candidate's backtest: errors pooled over every fold's horizon."""

    mase: float | None  # MAE / seasonal-naive MAE on the same folds (the baseline is 1.0)
    mae: float | None
    seconds: float
    error: str | None  # why the candidate failed, if it did


@dataclass(frozen=True)
class Trained:
    model: str
    params: JSON
    scores: dict[str, Score]
    artifact: bytes
    versions: dict[str, str]
    train_seconds: float
    season_length: int
    folds: int
    horizon_steps: int
    fingerprint: str
    first_us: int  # the first step a prediction from this artifact describes


@dataclass(frozen=True, eq=False)
class Forecast:
    model: str
    first_us: int
    step_s: int
    mean: FloatArray
    lo80: FloatArray
    hi80: FloatArray
    lo95: FloatArray
    hi95: FloatArray

    def times_us(self) -> npt.NDArray[np.int64]:
        return self.first_us + np.arange(len(self.mean), dtype=np.int64) * (self.step_s * US_PER_S)


class ArtifactError(ValueError):
    """The bytes are not an artifact this code can load; retrain."""


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in (*PICKLED_LIBRARIES, "statsmodels", "scipy"):
        versions[name] = importlib.metadata.version(name)
    return versions


def _odd_at_least(x: float) -> int:
    n = math.ceil(x)
    return n if n % 2 else n + 1


def stl_jumps(season: int) -> dict[str, int]:
    """R's stl() defaults: evaluate each LOESS every ceil(window/10) points.

    statsmodels evaluates at every point, which at a season of 1,440 costs ~10 s per
    fit (the trend window spans ~2,500 points); with R's jumps it is ~0.1 s, and on the
    benchmark series the forecasts agree to within noise. The windows are statsmodels'
    own defaults for MSTL's seasonal window of 11.
    """
    seasonal = 11
    trend = _odd_at_least(1.5 * season / (1 - 1.5 / seasonal))
    low_pass = _odd_at_least(season + 1)
    return {
        "seasonal_jump": math.ceil(seasonal / 10),
        "trend_jump": math.ceil(trend / 10),
        "low_pass_jump": math.ceil(low_pass / 10),
    }


def candidates(step_s: int, n_points: int) -> tuple[str, ...]:
    """The models tried for a series of n_points cells at step_s, baseline first.

    Measured on the 2-core box (7 days, one fit): 1 min: MSTL 0.7-1.2 s, AutoETS(ZZN)
    0.9 s, Theta 5-7 s (excluded); 5 min: MSTL 0.2 s, AutoETS 0.1 s, Theta 0.3 s;
    15 min and up: all under 0.1 s, seasonal AutoETS at 1 h 0.25 s.
    """
    m = season_length(step_s)
    seasonal = m > 1 and n_points >= 2 * m
    names = ["SeasonalNaive"]
    if seasonal:
        names.append("MSTL")
    names.append("AutoETS")
    if m <= THETA_MAX_SEASON:
        names.append("Theta")
    return tuple(names)


def _build(name: str, season: int) -> Any:
    from statsforecast.models import MSTL, AutoETS, SeasonalNaive, Theta

    if name == "SeasonalNaive":
        return SeasonalNaive(season_length=season)
    if name == "MSTL":
        return MSTL(
            season_length=season,
            trend_forecaster=AutoETS(model="ZZN"),
            stl_kwargs=stl_jumps(season),
        )
    if name == "AutoETS":
        if 1 < season <= ETS_MAX_SEASON:
            return AutoETS(season_length=season, model="ZZZ")
        return AutoETS(model="ZZN")
    if name == "Theta":
        return Theta(season_length=season)
    raise ValueError(f"unknown candidate {name!r}")


def fold_spacing(horizon: int, season: int) -> int:
    """Steps between backtest origins: whole days with a daily season, else the horizon.

    With a season the origins sit at the same time of day as the forecast to be made
    (the end of the series), one or more days back: which model wins at 06:00 (sunrise)
    is not which wins at 12:00, and the three hours before the origin, the usual
    contiguous folds at a 1-minute step, say little about the hour after it.
    """
    if season > 1:
        return season * -(-horizon // season)
    return horizon


def _origins(n: int, horizon: int, season: int, wanted: int) -> list[int]:
    """Backtest origins, oldest first, keeping two seasons in the shortest training set."""
    spacing = fold_spacing(horizon, season)
    min_train = max(2 * season, 2 * horizon, 8)
    count = max(0, min(wanted, (n - min_train) // spacing))
    return [n - k * spacing for k in range(count, 0, -1)]


def _backtest(
    y: FloatArray, names: Sequence[str], season: int, horizon: int, origins: Sequence[int]
) -> dict[str, Score]:
    """Fold k trains on everything before origin k and forecasts the next `horizon` cells."""
    actual = np.concatenate([y[o : o + horizon] for o in origins])
    maes: dict[str, float | None] = {}
    scores: dict[str, Score] = {}
    for name in names:
        started = time.perf_counter()
        error: str | None = None
        try:
            predicted = np.concatenate(
                [_build(name, season).forecast(y=y[:o], h=horizon)["mean"] for o in origins]
            )
            mae = float(np.mean(np.abs(predicted - actual)))
            if not math.isfinite(mae):
                raise ValueError("non-finite forecast")
        except Exception as exc:  # a candidate that cannot fit this series just loses
            mae, error = None, f"{type(exc).__name__}: {exc}"
        maes[name] = mae
        scores[name] = Score(mase=None, mae=mae, seconds=time.perf_counter() - started, error=error)
    base = maes["SeasonalNaive"]
    for name, mae in maes.items():
        if mae is None or base is None:
            continue
        if base > 0:
            scores[name]["mase"] = mae / base
        elif mae == 0:
            scores[name]["mase"] = 1.0  # both perfect (a constant series)
    return scores


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays to plain floats and lists; NaN and inf to None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    return value if isinstance(value, str) or value is None else str(value)


def _params(name: str, fitted: Any, season: int) -> JSON:
    """What a person reading the training record wants to know about the fitted model."""
    model = fitted.model_
    if name == "SeasonalNaive":
        out: JSON = {"season_length": season, "sigma": model["sigma"]}
    elif name == "MSTL":
        trend = fitted.trend_forecaster.model_
        out = {
            "season_length": season,
            "stl": {"seasonal": 11, **fitted.stl_kwargs},
            "trend": {"method": trend["method"], "par": trend["par"], "sigma2": trend["sigma2"]},
        }
    elif name == "AutoETS":
        out = {
            "season_length": model["m"],
            "method": model["method"],
            "par": model["par"],
            "aicc": model["aicc"],
            "sigma2": model["sigma2"],
        }
    else:
        out = {
            "season_length": season,
            "modeltype": model["modeltype"],
            "par": model["par"],
            "decompose": model["decompose"],
            "decomposition_type": model.get("decomposition_type"),
        }
    result: JSON = _jsonable(out)
    return result


def _dump(header: JSON, model: Any) -> bytes:
    # Protocol 5 is fixed (not HIGHEST_PROTOCOL) so a newer Python writes the same bytes.
    payload = pickle.dumps(model, protocol=5)
    header = {**header, "payload_sha256": hashlib.sha256(payload).hexdigest()}
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return MAGIC + struct.pack("<I", len(head)) + head + payload


def read_header(artifact: bytes) -> JSON:
    """The artifact's header (format, model, grid, versions) without unpickling."""
    header, _ = _split(artifact)
    return header


def _split(artifact: bytes) -> tuple[JSON, bytes]:
    if not artifact.startswith(MAGIC) or len(artifact) < len(MAGIC) + 4:
        raise ArtifactError("not a forecast artifact (bad magic)")
    (size,) = struct.unpack_from("<I", artifact, len(MAGIC))
    start = len(MAGIC) + 4
    try:
        header: JSON = json.loads(artifact[start : start + size])
    except ValueError as exc:
        raise ArtifactError(f"unreadable artifact header: {exc}") from exc
    payload = artifact[start + size :]
    if header.get("format") != FORMAT_VERSION:
        raise ArtifactError(
            f"artifact format {header.get('format')!r}, this code reads {FORMAT_VERSION}; retrain"
        )
    if hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
        raise ArtifactError("artifact payload is corrupt (sha256 mismatch)")
    return header, payload


def _check_versions(trained: dict[str, str]) -> None:
    here = library_versions()
    for name in (*PICKLED_LIBRARIES, "python"):
        then, now = trained.get(name, "?"), here[name]
        if then.split(".")[0] != now.split(".")[0]:
            raise ArtifactError(
                f"artifact was trained with {name} {then}, this process has {now}: "
                "a pickle does not cross major versions; retrain"
            )


def _load(artifact: bytes) -> tuple[JSON, Any]:
    header, payload = _split(artifact)
    _check_versions(header.get("versions", {}))
    # The payload is a pickle: load only artifacts this service wrote to its own database
    # (the sha256 above catches corruption, not tampering).
    try:
        model = pickle.load(io.BytesIO(payload))
    except Exception as exc:
        raise ArtifactError(f"cannot unpickle the artifact: {exc}; retrain") from exc
    return header, model


def train(
    series: Series,
    *,
    horizon_steps: int,
    folds: int = DEFAULT_FOLDS,
    names: Sequence[str] | None = None,
) -> Trained:
    """Pick a model for `series` (NaN-free, e.g. from series.prepare) and fit it.

    The backtest has min(folds, what fits) rolling origins (see fold_spacing); with
    none (too short a history for the horizon) the seasonal-naive baseline is kept.
    `names` restricts the candidates (the baseline is always added). Deterministic: the
    same series gives the same artifact bytes (no clocks or random state inside).
    """
    started = time.perf_counter()
    if horizon_steps < 1:
        raise ValueError("horizon_steps must be at least 1")
    # Imported up front so the first candidate's backtest time is its own, not the import.
    import statsforecast.models  # noqa: F401

    y = np.ascontiguousarray(series.values, dtype=np.float64)
    if len(y) < 2 or not np.isfinite(y).all():
        raise ValueError("train needs a NaN-free series of at least 2 points (use prepare)")
    m = season_length(series.step_s)
    # Under two seasons nothing can learn a daily cycle: every candidate, the baseline
    # included (it becomes the naive last value), is fitted without one.
    season = m if len(y) >= 2 * m else 1
    tried = candidates(series.step_s, len(y))
    if names is not None:
        tried = tuple(n for n in tried if n == "SeasonalNaive" or n in names)
    origins = _origins(len(y), horizon_steps, season, folds)
    scores = _backtest(y, tried, season, horizon_steps, origins) if origins else {}
    # Lowest MASE wins; ties go to the earlier (simpler) candidate, the baseline first.
    ranked = [n for n in tried if n in scores and scores[n]["mase"] is not None]
    chosen = min(ranked, key=lambda n: scores[n]["mase"] or 0.0, default="SeasonalNaive")
    try:
        fitted = _build(chosen, season).fit(y=y)
    except Exception:  # it fitted every fold; if the full series defeats it, keep the baseline
        chosen = "SeasonalNaive"
        fitted = _build(chosen, season).fit(y=y)
    versions = library_versions()
    digest = fingerprint(series)
    header: JSON = {
        "format": FORMAT_VERSION,
        "model": chosen,
        "season_length": season,
        "step_s": series.step_s,
        "first_us": series.end_us,
        "n_points": len(y),
        "fingerprint": digest,
        "versions": versions,
    }
    return Trained(
        model=chosen,
        params=_params(chosen, fitted, season),
        scores=scores,
        artifact=_dump(header, fitted),
        versions=versions,
        train_seconds=time.perf_counter() - started,
        season_length=season,
        folds=len(origins),
        horizon_steps=horizon_steps,
        fingerprint=digest,
        first_us=series.end_us,
    )


def predict(artifact: bytes, *, horizon_steps: int) -> Forecast:
    """Mean and 80/95 % intervals for the horizon_steps cells after the training series."""
    if horizon_steps < 1:
        raise ValueError("horizon_steps must be at least 1")
    header, model = _load(artifact)
    try:
        out = model.predict(h=horizon_steps, level=list(LEVELS))
    except Exception as exc:
        raise ArtifactError(f"the stored {header['model']} cannot predict: {exc}") from exc

    def band(key: str) -> FloatArray:
        return np.asarray(out[key], dtype=np.float64)

    mean = band("mean")
    # Simulated intervals (multiplicative ETS) can in rare cases cross the analytic
    # mean; the API promises lo95 <= lo80 <= mean <= hi80 <= hi95, so hold it here.
    lo80 = np.minimum(band("lo-80"), mean)
    hi80 = np.maximum(band("hi-80"), mean)
    lo95 = np.minimum(band("lo-95"), lo80)
    hi95 = np.maximum(band("hi-95"), hi80)
    for array in (mean, lo80, hi80, lo95, hi95):
        array.flags.writeable = False
    return Forecast(
        model=header["model"],
        first_us=header["first_us"],
        step_s=header["step_s"],
        mean=mean,
        lo80=lo80,
        hi80=hi80,
        lo95=lo95,
        hi95=hi95,
    )


def _synthetic(step_s: int, days: int) -> Series:
    """A smooth daily cycle with a trend; no random numbers, so warm-up is reproducible."""
    m = season_length(step_s)
    t = np.arange(days * m, dtype=np.float64)
    y = 10 + 0.01 * t + 3 * np.sin(2 * np.pi * t / m) + 0.3 * np.sin(7.3 * t)
    return Series(0, step_s, y)


def warm_up(steps_s: Sequence[int] = (3600, 300)) -> float:
    """Import statsforecast and fit and predict every candidate once; the seconds taken.

    statsforecast 2.x has no numba (its kernels are C++ in the wheel), so there is no JIT
    to pay for; the first call still pays for importing statsforecast, pandas, scipy and
    statsmodels and for their lazy first-use imports (~2-3 s cold). The service calls this
    at start-up so the first real training or prediction does not.
    """
    started = time.perf_counter()
    for step in steps_s:
        series = _synthetic(step, days=3)
        m = season_length(step)
        for name in candidates(step, len(series)):
            fitted: Any = _build(name, m).fit(y=series.values)
            fitted.predict(h=4, level=list(LEVELS))
    return time.perf_counter() - started
