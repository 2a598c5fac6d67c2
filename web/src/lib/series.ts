// API answers shaped into uPlot's column arrays: x in epoch seconds, one array per series,
// null where a series has no value (uPlot then breaks the line).
import { parseApiTime } from "./time";

export type Column = (number | null)[];
export type Columns = [number[], ...Column[]];

export interface Bucket {
  start: string;
  end: string;
  count: number;
  sum: number;
  avg: number;
  min: number;
  max: number;
}

export interface ForecastPoint {
  time: string;
  forecast: number;
  lo80: number;
  hi80: number;
  lo95: number;
  hi95: number;
}

export interface Prediction {
  scope: "device" | "site";
  sensor_id?: string | null;
  site_id?: string | null;
  metric: string;
  version: number;
  model: string;
  step: string;
  step_s: number;
  horizon: string;
  horizon_steps: number;
  trained_at: string;
  points: ForecastPoint[];
}

export interface EnergyWindow {
  start: string;
  end: string;
  avg_power_w: number;
  peak_power_w: number;
  energy_wh: number;
  cumulative_energy_wh: number;
}

/** Values that are not null in a column. */
export function countPoints(column: Column | undefined): number {
  return column ? column.filter((v) => v !== null && Number.isFinite(v)).length : 0;
}

/**
 * [x, avg, min, max] from aggregate buckets in time order; a missing bucket (a gap longer
 * than the interval) gets one row of nulls so the line and the band break there.
 */
export function aggregateColumns(buckets: readonly Bucket[], intervalS: number): Columns {
  const rows = buckets
    .map((b) => ({ x: parseApiTime(b.start) / 1000, b }))
    .filter((r) => Number.isFinite(r.x))
    .sort((a, b) => a.x - b.x);
  const x: number[] = [];
  const avg: Column = [];
  const min: Column = [];
  const max: Column = [];
  let previous: number | null = null;
  for (const { x: t, b } of rows) {
    if (previous !== null && t - previous > intervalS) {
      x.push(previous + intervalS);
      avg.push(null);
      min.push(null);
      max.push(null);
    }
    x.push(t);
    avg.push(b.avg);
    min.push(b.min);
    max.push(b.max);
    previous = t;
  }
  return [x, avg, min, max];
}

/**
 * History then forecast on one x axis: [x, history, forecast, lo80, hi80, lo95, hi95].
 * History points at or after the first forecast time are dropped; the forecast line and its
 * bands start at the last history point so the drawing joins up without a jump in time.
 */
export function forecastColumns(
  history: readonly Bucket[],
  prediction: Pick<Prediction, "points">,
): Columns {
  const points = prediction.points
    .map((p) => ({ x: parseApiTime(p.time) / 1000, p }))
    .filter((r) => Number.isFinite(r.x))
    .sort((a, b) => a.x - b.x);
  const firstForecast = points.length ? points[0].x : Infinity;
  const past = history
    .map((b) => ({ x: parseApiTime(b.start) / 1000, v: b.avg }))
    .filter((r) => Number.isFinite(r.x) && r.x < firstForecast)
    .sort((a, b) => a.x - b.x);
  const x: number[] = [];
  const cols: Column[] = [[], [], [], [], [], []];
  const push = (t: number, values: (number | null)[]) => {
    x.push(t);
    values.forEach((v, i) => cols[i].push(v));
  };
  past.forEach((r, i) => {
    const last = i === past.length - 1 && points.length > 0;
    // The joint: the last observed value is also where the forecast and its bands begin.
    push(r.x, last ? [r.v, r.v, r.v, r.v, r.v, r.v] : [r.v, null, null, null, null, null]);
  });
  for (const { x: t, p } of points) push(t, [null, p.forecast, p.lo80, p.hi80, p.lo95, p.hi95]);
  return [x, ...cols];
}

/** [x, avg power W, peak power W, cumulative energy Wh]. */
export function energyColumns(windows: readonly EnergyWindow[]): Columns {
  const rows = windows
    .map((w) => ({ x: parseApiTime(w.start) / 1000, w }))
    .filter((r) => Number.isFinite(r.x))
    .sort((a, b) => a.x - b.x);
  return [
    rows.map((r) => r.x),
    rows.map((r) => r.w.avg_power_w),
    rows.map((r) => r.w.peak_power_w),
    rows.map((r) => r.w.cumulative_energy_wh),
  ];
}
