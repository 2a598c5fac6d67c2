"""Model choice, intervals, artifacts and the three reproducibility properties.

Coarse steps (15 minutes, 1 hour) keep every fit well under a second; the 1-minute case
is in scripts/bench_forecast.py.
"""

import hashlib
import json
import random
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from forecast.models import (
    MAGIC,
    ArtifactError,
    Trained,
    _build,
    candidates,
    predict,
    read_header,
    stl_jumps,
    train,
    warm_up,
)
from forecast.series import Series

US = 1_000_000
T0 = 1_699_999_200 * US  # a whole hour
STEP = 900
ROOT = Path(__file__).resolve().parents[2]


def trend_and_cycle(step_s: int, days: float, seed: int = 0) -> np.ndarray:
    """A meter: a two-harmonic daily load cycle, a steady rise, a little noise."""
    n = int(days * 86_400 // step_s)
    t = np.arange(n) * step_s
    day = 2 * np.pi * (t % 86_400) / 86_400
    rng = np.random.default_rng(seed)
    load = 0.55 + 0.3 * np.sin(day - 2 * np.pi * 7 / 24) + 0.15 * np.sin(2 * day - 2.0)
    return 1000 * load + 40 * t / 86_400 + rng.normal(0, 10, n)


@pytest.fixture(scope="module")
def week() -> np.ndarray:
    return trend_and_cycle(STEP, 8)  # 7 days to train on, 1 day of truth after


@pytest.fixture(scope="module")
def series(week: np.ndarray) -> Series:
    return Series(T0, STEP, week[: 7 * 96])


@pytest.fixture(scope="module")
def trained(series: Series) -> Trained:
    return train(series, horizon_steps=24)


def test_candidates_per_step() -> None:
    assert candidates(60, 10_080) == ("SeasonalNaive", "MSTL", "AutoETS")
    assert candidates(300, 2016) == ("SeasonalNaive", "MSTL", "AutoETS", "Theta")
    assert candidates(900, 672) == ("SeasonalNaive", "MSTL", "AutoETS", "Theta")
    assert candidates(3600, 30) == ("SeasonalNaive", "AutoETS", "Theta")  # under 2 days
    # R's stl() jumps: statsmodels' windows for a 1,440 season are 2,501 and 1,441.
    assert stl_jumps(1440) == {"seasonal_jump": 2, "trend_jump": 251, "low_pass_jump": 145}


def test_model_selection_beats_seasonal_naive(trained: Trained, week: np.ndarray) -> None:
    assert trained.model != "SeasonalNaive"
    assert trained.folds == 3 and trained.season_length == 96
    base = trained.scores["SeasonalNaive"]
    assert base["mase"] == 1.0 and base["mae"] is not None and base["mae"] > 0
    best = trained.scores[trained.model]["mase"]
    assert best is not None and best < 0.9
    assert best == min(s["mase"] for s in trained.scores.values() if s["mase"] is not None)
    # And on the day after the training data, which the backtest never saw.
    truth = week[7 * 96 : 7 * 96 + 24]
    chosen = predict(trained.artifact, horizon_steps=24)
    naive = predict(
        train(Series(T0, STEP, week[: 7 * 96]), horizon_steps=24, names=()).artifact,
        horizon_steps=24,
    )
    assert naive.model == "SeasonalNaive"
    assert np.mean(np.abs(chosen.mean - truth)) < np.mean(np.abs(naive.mean - truth))


def test_training_record_is_json_and_complete(trained: Trained, series: Series) -> None:
    record = {
        "model": trained.model,
        "params": trained.params,
        "scores": trained.scores,
        "versions": trained.versions,
    }
    json.dumps(record, allow_nan=False)  # straight into a jsonb column
    assert set(trained.versions) >= {"statsforecast", "numpy", "python"}
    assert trained.versions["statsforecast"] == "2.1.1"
    assert trained.train_seconds > 0 and trained.horizon_steps == 24
    assert trained.first_us == series.end_us
    header = read_header(trained.artifact)
    assert header["model"] == trained.model and header["fingerprint"] == trained.fingerprint


def test_intervals_are_ordered_and_start_after_the_series(trained: Trained, series: Series) -> None:
    f = predict(trained.artifact, horizon_steps=50)
    assert len(f.mean) == 50 and f.step_s == STEP
    assert f.first_us == series.end_us == T0 + 672 * STEP * US
    assert f.times_us()[1] - f.times_us()[0] == STEP * US
    assert np.all(f.lo95 <= f.lo80) and np.all(f.lo80 <= f.mean)
    assert np.all(f.mean <= f.hi80) and np.all(f.hi80 <= f.hi95)
    assert np.all(f.hi95 - f.lo95 > 0)
    with pytest.raises(ValueError):
        f.mean[0] = 0.0


@pytest.mark.parametrize("name", ["SeasonalNaive", "MSTL", "AutoETS", "Theta"])
def test_every_candidate_has_natively_ordered_intervals(series: Series, name: str) -> None:
    """predict() enforces the order; this shows no candidate relies on that here."""
    fitted = _build(name, 96).fit(y=series.values)
    raw = fitted.predict(h=48, level=[80, 95])
    bands = np.stack([raw["lo-95"], raw["lo-80"], raw["mean"], raw["hi-80"], raw["hi-95"]])
    assert np.all(np.diff(bands, axis=0) >= 0)


# --- reproducibility ----------------------------------------------------------------------

CHILD = """
import hashlib, sys
import numpy as np
from forecast.models import predict, train
from forecast.series import Series

artifact = open(sys.argv[1], "rb").read()
f = predict(artifact, horizon_steps=int(sys.argv[2]))
for band in (f.mean, f.lo80, f.hi80, f.lo95, f.hi95):
    print(" ".join(float(v).hex() for v in band))
values = np.array([float.fromhex(v) for v in open(sys.argv[3]).read().split()])
again = train(Series(int(sys.argv[4]), int(sys.argv[5]), values), horizon_steps=24)
print(hashlib.sha256(again.artifact).hexdigest())
"""


def hexes(values: np.ndarray) -> str:
    return " ".join(float(v).hex() for v in values)


def test_same_artifact_same_bits_in_another_process_and_same_training_there(
    trained: Trained, series: Series, tmp_path: Path
) -> None:
    """A fresh interpreter (a restart, another worker) predicts the same bits from the
    stored bytes, and training there on the same values writes the same bytes."""
    artifact = tmp_path / "model.bin"
    artifact.write_bytes(trained.artifact)
    data = tmp_path / "values.txt"
    data.write_text(hexes(series.values))
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(artifact),
            "36",
            str(data),
            str(series.start_us),
            str(STEP),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.splitlines()
    here = predict(trained.artifact, horizon_steps=36)
    assert out[:5] == [hexes(b) for b in (here.mean, here.lo80, here.hi80, here.lo95, here.hi95)]
    assert out[5] == hashlib.sha256(trained.artifact).hexdigest()


def test_training_twice_gives_the_same_artifact_bytes(trained: Trained, series: Series) -> None:
    again = train(Series(series.start_us, series.step_s, series.values.copy()), horizon_steps=24)
    assert again.artifact == trained.artifact
    assert again.scores == {
        k: {**v, "seconds": again.scores[k]["seconds"]} for k, v in trained.scores.items()
    }
    first = predict(trained.artifact, horizon_steps=24)
    second = predict(bytes(bytearray(trained.artifact)), horizon_steps=24)
    assert first.mean.tobytes() == second.mean.tobytes()
    assert first.hi95.tobytes() == second.hi95.tobytes()


def test_no_global_random_state_is_used_or_needed(series: Series, trained: Trained) -> None:
    np_state, py_state = np.random.get_state(), random.getstate()
    t = train(series, horizon_steps=24)
    f = predict(t.artifact, horizon_steps=24)
    after = np.random.get_state()
    assert all(np.array_equal(a, b) for a, b in zip(np_state, after, strict=True))
    assert random.getstate() == py_state
    # Whatever the global seeds, the same bytes and the same bits.
    np.random.seed(12345)
    random.seed(54321)
    assert train(series, horizon_steps=24).artifact == trained.artifact
    assert predict(t.artifact, horizon_steps=24).mean.tobytes() == f.mean.tobytes()


# --- artifacts ----------------------------------------------------------------------------


def rebuilt(artifact: bytes, **changes: object) -> bytes:
    """The artifact with header fields replaced (the payload, and its digest, kept)."""
    (size,) = struct.unpack_from("<I", artifact, len(MAGIC))
    start = len(MAGIC) + 4
    header = {**json.loads(artifact[start : start + size]), **changes}
    head = json.dumps(header).encode()
    return MAGIC + struct.pack("<I", len(head)) + head + artifact[start + size :]


def test_artifact_refuses_another_major_version_a_bad_format_and_corruption(
    trained: Trained,
) -> None:
    versions = dict(trained.versions)
    assert predict(rebuilt(trained.artifact, versions=versions), horizon_steps=3)
    with pytest.raises(ArtifactError, match=r"statsforecast 1\.7\.1"):
        predict(
            rebuilt(trained.artifact, versions={**versions, "statsforecast": "1.7.1"}),
            horizon_steps=3,
        )
    with pytest.raises(ArtifactError, match=r"numpy 1\.26\.4"):
        predict(
            rebuilt(trained.artifact, versions={**versions, "numpy": "1.26.4"}), horizon_steps=3
        )
    with pytest.raises(ArtifactError, match="format"):
        predict(rebuilt(trained.artifact, format=99), horizon_steps=3)
    with pytest.raises(ArtifactError, match="corrupt"):
        predict(trained.artifact[:-1] + bytes([trained.artifact[-1] ^ 1]), horizon_steps=3)
    with pytest.raises(ArtifactError, match="magic"):
        predict(b"not an artifact", horizon_steps=3)


# --- short histories ----------------------------------------------------------------------


def test_a_history_too_short_for_the_backtest_keeps_the_baseline(week: np.ndarray) -> None:
    t = train(Series(T0, STEP, week[:200]), horizon_steps=96)
    assert t.folds == 0 and t.scores == {} and t.model == "SeasonalNaive"
    assert len(predict(t.artifact, horizon_steps=96).mean) == 96


def test_under_two_seasons_fits_without_a_daily_cycle() -> None:
    y = trend_and_cycle(3600, 1.5)
    t = train(Series(T0, 3600, y), horizon_steps=6)
    assert t.season_length == 1 and "MSTL" not in t.scores and t.folds == 3
    f = predict(t.artifact, horizon_steps=6)
    assert np.all(f.lo95 <= f.hi95)


def test_train_rejects_nan_and_a_bad_horizon(series: Series) -> None:
    with pytest.raises(ValueError, match="NaN"):
        train(Series(T0, STEP, np.array([1.0, np.nan, 2.0])), horizon_steps=1)
    with pytest.raises(ValueError):
        train(series, horizon_steps=0)
    with pytest.raises(ValueError):
        predict(b"", horizon_steps=0)


def test_warm_up_fits_every_candidate() -> None:
    assert warm_up() > 0
