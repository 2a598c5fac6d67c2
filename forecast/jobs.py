"""What the training processes run: plain functions of plain values, picklable both ways.

This module is what a pool process imports (the jobs are found by their qualified name),
so it imports only numpy and the model core, not the web stack.
"""

import time
from dataclasses import dataclass

from forecast import models
from forecast.series import FloatArray, Gap, Series, TooLittleData, default_min_points, prepare

# Set by the pool initializer; each process reports it with its first job.
_warm_up_s: float | None = None


def initialize() -> None:
    """The pool initializer: pay statsforecast's first-use cost before any real job."""
    global _warm_up_s
    _warm_up_s = models.warm_up()


def warmed() -> float:
    """What this process's warm-up cost (the initializer has run before any job)."""
    return -1.0 if _warm_up_s is None else _warm_up_s


@dataclass(frozen=True)
class Fitted:
    """A training's outcome; `trained` is None when too little data remained."""

    trained: models.Trained | None
    gaps: tuple[Gap, ...]
    outliers_replaced: int
    observed_points: int
    need_points: int
    # The prepared series actually fitted (leading and trailing holes and cut history gone).
    start_us: int
    end_us: int
    seconds: float


def fit(start_us: int, step_s: int, values: FloatArray, backtest_steps: int) -> Fitted:
    """Hampel, the gap policy and the length check, then candidates, backtest and refit."""
    started = time.perf_counter()
    series = Series(start_us, step_s, values)
    try:
        prepared = prepare(series)
    except TooLittleData as error:
        # Returned, not raised: TooLittleData's two-argument constructor does not survive
        # the trip back through pickle.
        return Fitted(
            None, (), 0, error.have_points, error.need_points, 0, 0, time.perf_counter() - started
        )
    trained = models.train(prepared.series, horizon_steps=backtest_steps)
    return Fitted(
        trained,
        prepared.gaps,
        prepared.outliers_replaced,
        prepared.observed_points,
        default_min_points(step_s),
        prepared.series.start_us,
        prepared.series.end_us,
        time.perf_counter() - started,
    )
