"""The forecaster's query parameters: which series, its window, step and horizon.

Times and durations go through app.core.params and app.core.timeparse, so the grammar and
the errors (an InvalidInput naming the parameter) are the API's.
"""

import math
import time

from app.core.errors import InvalidInput
from app.core.params import parse_range
from app.core.settings import Settings
from app.core.timeparse import US, parse_duration
from app.reads.aggregates import Scope
from forecast.queries import Target

DAY_S = 86_400


def step_text(seconds: float) -> str:
    """A step or horizon as the API writes it: 1m, 15m, 2h, 1d (or seconds)."""
    for unit, width in (("d", DAY_S), ("h", 3600), ("m", 60)):
        if seconds >= width and seconds % width == 0:
            return f"{seconds / width:g}{unit}"
    return f"{seconds:g}s"


def target(
    tenant: str,
    metric: str,
    *,
    sensor_id: str | None,
    device_id: str | None,
    site_id: str | None,
) -> tuple[Target, str]:
    """The series asked for and the parameter that named it (for errors about it)."""
    given = [
        (name, value)
        for name, value in (
            ("sensor_id", sensor_id),
            ("device_id", device_id),
            ("site_id", site_id),
        )
        if value is not None
    ]
    if not given:
        raise InvalidInput("give sensor_id (or device_id), or site_id", field="sensor_id")
    if len(given) > 1:
        raise InvalidInput(
            f"give one of sensor_id, device_id, site_id, not {len(given)}", field=given[1][0]
        )
    name, key = given[0]
    scope: Scope = "site" if name == "site_id" else "device"
    return Target(tenant, scope, key, metric), name


def parse_step(value: str | None) -> int | None:
    """A step in seconds: whole minutes (the finest rollup), at most a day; None if absent."""
    if value is None or value == "":
        return None
    return int(parse_duration(value, "step", max_s=DAY_S, whole_minutes=True))


def parse_horizon(value: str | None, settings: Settings) -> float:
    """A horizon in seconds, checked before any model is looked up; default 1 hour."""
    if value is None or value == "":
        return float(settings.forecast_horizon_s)
    seconds = parse_duration(value, "horizon", max_s=settings.forecast_max_horizon_steps * DAY_S)
    if seconds <= 0:
        raise InvalidInput("must be longer than zero", field="horizon")
    return seconds


def horizon_steps(seconds: float, step_s: int, settings: Settings) -> int:
    """The steps a horizon covers at a model's step: a partial last step counts whole."""
    steps = math.ceil(seconds / step_s)
    if steps > settings.forecast_max_horizon_steps:
        raise InvalidInput(
            f"must be at most {settings.forecast_max_horizon_steps} steps of {step_text(step_s)}",
            field="horizon",
        )
    return steps


def training_window(
    from_value: str | None, to_value: str | None, step_s: int, settings: Settings
) -> tuple[int, int]:
    """[from, to) narrowed to whole steps (the current, partial step is not trained on);
    by default the last FORECAST_WINDOW_S up to now."""
    lo, hi = parse_range(
        from_value,
        to_value,
        ("from", "to"),
        default_to_us=time.time_ns() // 1000,
        default_span_us=settings.forecast_window_s * US,
    )
    step_us = step_s * US
    lo, hi = -(-lo // step_us) * step_us, hi // step_us * step_us
    if hi <= lo:
        raise InvalidInput(f"the window holds no whole step of {step_text(step_s)}", field="to")
    cells = (hi - lo) // step_us
    if cells > settings.forecast_max_points:
        raise InvalidInput(
            f"the window holds {cells} steps of {step_text(step_s)}, at most "
            f"{settings.forecast_max_points}: shorten it or use a coarser step",
            field="from",
        )
    return lo, hi
