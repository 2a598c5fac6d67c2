"""Aggregate reads over the rollups (migrations/versions/0002_aggregates.py).

A range is cut into pieces, each answered by the coarsest rollup whose buckets fit whole
inside it and inside one output cell; only the sub-minute edges read raw rows. The same
relations exist on TimescaleDB (continuous aggregates) and on plain PostgreSQL (views over
worker-maintained tables), so these queries are the same on both paths.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg

from app.core.timeparse import US, to_datetime, to_us

Scope = Literal["device", "site"]


@dataclass(frozen=True, slots=True)
class Level:
    name: str
    seconds: int
    column: str

    def relation(self, scope: Scope) -> str:
        return f"{'site_' if scope == 'site' else ''}readings_{self.name}"


LEVELS = (Level("1d", 86400, "day"), Level("1h", 3600, "hour"), Level("1m", 60, "minute"))


@dataclass(frozen=True, slots=True)
class Piece:
    """[lo, hi) in epoch microseconds, answered by one rollup level (None: raw rows)."""

    level: Level | None
    lo: int
    hi: int


def plan(from_us: int, to_us_: int, cell_s: int | None) -> list[Piece]:
    """Cover [from, to) with the fewest rollup buckets, coarsest first.

    A level is usable when its width divides the cell (cells are aligned to the epoch, so
    each of its buckets then falls in one cell); with no cell, the range is one cell. Each
    level leaves at most two edges to the next, so a plan has at most seven pieces.
    """
    usable = [level for level in LEVELS if cell_s is None or cell_s % level.seconds == 0]
    pieces: list[Piece] = []
    ranges = [(from_us, to_us_)]
    for level in usable:
        width = level.seconds * US
        rest: list[tuple[int, int]] = []
        for lo, hi in ranges:
            start = -(-lo // width) * width
            end = hi // width * width
            if start < end:
                pieces.append(Piece(level, start, end))
                if lo < start:
                    rest.append((lo, start))
                if end < hi:
                    rest.append((end, hi))
            else:
                rest.append((lo, hi))
        ranges = rest
    pieces.extend(Piece(None, lo, hi) for lo, hi in ranges if lo < hi)
    return pieces


@dataclass(frozen=True, slots=True)
class Row:
    cell: int
    metric: str
    count: int
    sum: float
    min: float
    max: float
    energy: float = 0.0
    peak: float = 0.0
    minutes: int = 0


_BASIC = "value_count AS n, value_sum AS s, value_min AS lo, value_max AS hi"
_ENERGY = f"{_BASIC}, energy AS e, peak AS p, minutes AS m"
_RAW = "1::bigint AS n, value AS s, value AS lo, value AS hi"


def _query(scope: Scope, pieces: Sequence[Piece], cell_s: int | None, energy: bool) -> str:
    """The statement over the pieces. Parameters: $1 tenant, $2 key, $3 metrics, $4 limit,
    then with cells $5 the cell width, then each piece's [lo, hi) in turn."""
    key = "site_id" if scope == "site" else "device_id"
    first = 6 if cell_s else 5
    parts = []
    for index, piece in enumerate(pieces):
        lo, hi = first + 2 * index, first + 2 * index + 1
        where = (
            f"tenant_id = $1 AND {key} = $2 AND metric = ANY($3::text[])"
            f" AND {{t}} >= ${lo} AND {{t}} < ${hi}"
        )
        if piece.level is None:
            if energy:
                raise ValueError("energy is integrated per minute: the range must be whole minutes")
            parts.append(
                f"SELECT ts AS t, metric, {_RAW} FROM readings WHERE {where.format(t='ts')}"
            )
        else:
            column = piece.level.column
            parts.append(
                f"SELECT {column} AS t, metric, {_ENERGY if energy else _BASIC}"
                f" FROM {piece.level.relation(scope)} WHERE {where.format(t=column)}"
            )
    cell = "floor(extract(epoch FROM t) / $5::bigint)::bigint" if cell_s else "0"
    extra = ", sum(e) AS e, max(p) AS p, sum(m)::bigint AS m" if energy else ""
    return (
        f"SELECT {cell} AS cell, metric, sum(n)::bigint AS n, sum(s) AS s, min(lo) AS lo,"
        f" max(hi) AS hi{extra} FROM ({' UNION ALL '.join(parts)}) AS parts"
        " GROUP BY 1, metric ORDER BY 1, metric LIMIT $4"
    )


# For this transaction only: plan each execution with its values (a generic plan of these
# view unions cannot see the bounds and scans whole rollups: measured 120-200 ms against
# 3-7 ms); no JIT, whose compile time exceeds these short queries' run time; and random
# reads costed as what they are for a rollup's hot pages, else the planner walks the
# time index across every key (26k buffers) rather than the key index (44) for one site.
PLAN_EACH_TIME = """
SELECT set_config('plan_cache_mode', 'force_custom_plan', true), set_config('jit', 'off', true),
    set_config('random_page_cost', '1.1', true)
"""


@dataclass(frozen=True, slots=True)
class Selection:
    """The readings a query covers: one device's or site's, in [lo_us, hi_us)."""

    tenant: str
    scope: Scope
    key: str
    lo_us: int
    hi_us: int


async def aggregate(
    conn: asyncpg.Connection,
    selection: Selection,
    metrics: Sequence[str],
    *,
    cell_s: int | None,
    limit: int,
    energy: bool = False,
) -> list[Row]:
    """Per cell and metric: count, sum, min, max (and energy, peak, minutes for sites).

    Cells are epoch-aligned multiples of cell_s (one cell over the whole range when None);
    only cells with data come back, at most `limit` of them.
    """
    scope = selection.scope
    if energy and scope != "site":
        raise ValueError("energy columns exist on the site rollups only")
    pieces = plan(selection.lo_us, selection.hi_us, cell_s)
    if not pieces:
        return []
    args: list[Any] = [selection.tenant, selection.key, list(metrics), limit]
    if cell_s:
        args.append(cell_s)
    for piece in pieces:
        args += [to_datetime(piece.lo), to_datetime(piece.hi)]
    # The settings above are local to a transaction.
    async with conn.transaction(readonly=True):
        await conn.execute(PLAN_EACH_TIME)
        records = await conn.fetch(_query(scope, pieces, cell_s, energy), *args)
    rows = []
    for r in records:
        extra = {"energy": r["e"], "peak": r["p"], "minutes": r["m"]} if energy else {}
        rows.append(Row(r["cell"], r["metric"], r["n"], r["s"], r["lo"], r["hi"], **extra))
    return rows


@dataclass(frozen=True, slots=True)
class Bucket:
    start_us: int
    end_us: int
    count: int
    sum: float
    avg: float
    min: float
    max: float


@dataclass(frozen=True, slots=True)
class Window:
    start_us: int
    end_us: int
    avg_power: float
    peak_power: float
    energy_wh: float
    cumulative_wh: float


def _cell_bounds(cell: int, cell_s: int | None, selection: Selection) -> tuple[int, int]:
    if cell_s is None:
        return selection.lo_us, selection.hi_us
    start = cell * cell_s * US
    return max(start, selection.lo_us), min(start + cell_s * US, selection.hi_us)


def to_bucket(row: Row, bounds: tuple[int, int]) -> Bucket:
    # The true mean lies within [min, max]; rounding of sum / count may step outside it.
    avg = min(max(row.sum / row.count, row.min), row.max)
    return Bucket(bounds[0], bounds[1], row.count, row.sum, avg, row.min, row.max)


async def metric_buckets(
    conn: asyncpg.Connection, selection: Selection, metric: str, *, interval_s: int, limit: int
) -> list[Bucket]:
    """count, sum, avg, min, max per epoch-aligned interval, clipped to the range."""
    rows = await aggregate(conn, selection, [metric], cell_s=interval_s, limit=limit)
    return [to_bucket(r, _cell_bounds(r.cell, interval_s, selection)) for r in rows]


async def metric_totals(
    conn: asyncpg.Connection, selection: Selection, metrics: Sequence[str]
) -> dict[str, Bucket]:
    """One bucket per metric over the whole range (metrics without data are absent)."""
    rows = await aggregate(conn, selection, metrics, cell_s=None, limit=len(metrics))
    return {r.metric: to_bucket(r, (selection.lo_us, selection.hi_us)) for r in rows}


async def site_energy(
    conn: asyncpg.Connection, selection: Selection, metric: str, *, window_s: int, limit: int
) -> list[Window]:
    """Per window of a site's whole-minute range: average and peak power, energy, cumulative.

    A device's power in a minute is the mean of its samples there, clamped at zero (energy
    counts consumption); the site's is the sum over its devices. Energy integrates that over
    each minute with data; the average is over those minutes; the peak is the highest minute.
    """
    rows = await aggregate(conn, selection, [metric], cell_s=window_s, limit=limit, energy=True)
    windows = []
    cumulative = 0.0
    for r in rows:
        energy = max(r.energy, 0.0)
        peak = max(r.peak, 0.0)
        cumulative += energy
        hours = r.minutes / 60
        average = min(energy / hours, peak) if hours > 0 else 0.0
        start, end = _cell_bounds(r.cell, window_s, selection)
        windows.append(Window(start, end, average, peak, energy, cumulative))
    return windows


@dataclass(frozen=True, slots=True)
class RollupState:
    """What the API needs to know of the refresher: its watermark and its last round."""

    watermark_us: int | None
    refreshed_at_us: int | None
    log_id: int
    # The oldest change below the watermark that no round has rebuilt yet.
    pending_since_us: int | None = None


@dataclass(frozen=True, slots=True)
class Refreshed:
    """A range the refresher re-materialised because late data landed in it."""

    id: int
    lo_us: int
    hi_us: int


STATE = """
SELECT w1m, refreshed_at, pending_since,
    (SELECT coalesce(max(id), 0) FROM rollup_refresh_log) AS log_id
FROM rollup_state
"""

REFRESHED_SINCE = """
SELECT id, lo, hi FROM rollup_refresh_log WHERE id > $1 ORDER BY id
"""


def _us_or_none(moment: datetime | None) -> int | None:
    return to_us(moment) if moment is not None else None


async def rollup_state(conn: asyncpg.Connection) -> RollupState:
    row = await conn.fetchrow(STATE)
    assert row is not None, "rollup_state holds one row (migration 0002)"
    return RollupState(
        _us_or_none(row["w1m"]),
        _us_or_none(row["refreshed_at"]),
        row["log_id"],
        _us_or_none(row["pending_since"]),
    )


async def refreshed_since(conn: asyncpg.Connection, after_id: int) -> list[Refreshed]:
    rows = await conn.fetch(REFRESHED_SINCE, after_id)
    return [Refreshed(r["id"], to_us(r["lo"]), to_us(r["hi"])) for r in rows]


QUARANTINED = """
SELECT minute, device_id, metric, whole_bucket FROM rollup_quarantine
WHERE minute >= $1 AND minute < $2
    AND (whole_bucket OR (tenant_id = $3 AND metric = ANY($5::text[])
        AND CASE WHEN $6 THEN site_id = $4 ELSE device_id = $4 END))
ORDER BY minute LIMIT 100
"""


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A rollup piece the refresher could not build: the answer lacks its readings."""

    minute_us: int
    device_id: str
    metric: str
    whole_bucket: bool


async def quarantined(
    conn: asyncpg.Connection, selection: Selection, metrics: Sequence[str]
) -> list[Quarantined]:
    """The quarantined pieces inside the selection (an index probe; the table is near empty)."""
    rows = await conn.fetch(
        QUARANTINED,
        to_datetime(selection.lo_us),
        to_datetime(selection.hi_us),
        selection.tenant,
        selection.key,
        list(metrics),
        selection.scope == "site",
    )
    return [
        Quarantined(to_us(r["minute"]), r["device_id"], r["metric"], r["whole_bucket"])
        for r in rows
    ]
