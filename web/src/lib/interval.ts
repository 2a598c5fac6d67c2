// The chart interval for a time range: the finest the API offers that keeps a chart at or
// under max_points buckets; past the coarsest offered, a whole multiple of it.

export const PRESETS = ["15m", "1h", "6h", "24h", "7d"] as const;
export type Preset = (typeof PRESETS)[number];

export const DEFAULT_INTERVALS = ["1m", "5m", "15m", "30m", "1h", "6h", "12h", "1d"];

const UNIT_S: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** Seconds in a duration such as "90s", "5m", "1h", "7d"; throws on anything else. */
export function durationSeconds(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([smhdw])$/.exec(text.trim());
  if (!match) throw new Error(`not a duration: ${JSON.stringify(text)}`);
  return Number(match[1]) * UNIT_S[match[2]];
}

/** The shortest spelling of whole minutes: 60 -> "1m", 3600 -> "1h", 5400 -> "90m". */
export function formatDuration(seconds: number): string {
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]] as const) {
    if (seconds >= size && seconds % size === 0) return `${seconds / size}${unit}`;
  }
  return `${seconds}s`;
}

export interface IntervalChoice {
  interval: string;
  seconds: number;
  /** Buckets the range can touch at this interval (epoch-aligned, so one more than whole). */
  points: number;
}

/** Buckets of `stepS` seconds that [from, to) touches, counted on the epoch-aligned grid. */
export function bucketCount(fromMs: number, toMs: number, stepS: number): number {
  if (toMs <= fromMs) return 0;
  const step = stepS * 1000;
  return Math.floor((toMs - 1) / step) - Math.floor(fromMs / step) + 1;
}

export function chooseInterval(
  fromMs: number,
  toMs: number,
  maxPoints: number,
  intervals: readonly string[] = DEFAULT_INTERVALS,
): IntervalChoice {
  const offered = [...intervals]
    .map((interval) => ({ interval, seconds: durationSeconds(interval) }))
    .filter((o) => o.seconds >= 60 && o.seconds % 60 === 0)
    .sort((a, b) => a.seconds - b.seconds);
  if (offered.length === 0) offered.push({ interval: "1m", seconds: 60 });
  const limit = Math.max(1, Math.floor(maxPoints));
  for (const o of offered) {
    const points = bucketCount(fromMs, toMs, o.seconds);
    if (points <= limit) return { ...o, points };
  }
  const coarsest = offered[offered.length - 1].seconds;
  let times = Math.max(2, Math.ceil((toMs - fromMs) / 1000 / coarsest / limit));
  while (bucketCount(fromMs, toMs, coarsest * times) > limit) times += 1;
  const seconds = coarsest * times;
  return { interval: formatDuration(seconds), seconds, points: bucketCount(fromMs, toMs, seconds) };
}

export interface TimeRange {
  fromMs: number;
  toMs: number;
  /** The preset it came from, or null for a custom range. */
  preset: Preset | null;
}

export function presetRange(preset: Preset, nowMs: number): TimeRange {
  return { fromMs: nowMs - durationSeconds(preset) * 1000, toMs: nowMs, preset };
}

/** The range now: a preset rolls with the clock, a custom range stays put. */
export function resolveRange(range: TimeRange, nowMs: number = Date.now()): TimeRange {
  return range.preset ? presetRange(range.preset, nowMs) : range;
}

/** What identifies a range for caching: the preset, or the custom bounds. */
export function rangeKey(range: TimeRange): string {
  return range.preset ?? `${range.fromMs}-${range.toMs}`;
}
