import { describe, expect, it } from "vitest";
import { metricColumns } from "../src/components/Status";
import { type Bucket, aggregateColumns, countPoints, energyColumns, forecastColumns } from "../src/lib/series";

const bucket = (start: string, avg: number, min = avg - 1, max = avg + 1): Bucket => ({
  start,
  end: start,
  count: 1,
  sum: avg,
  avg,
  min,
  max,
});
const s = (iso: string) => Date.parse(iso) / 1000;

describe("aggregateColumns", () => {
  it("gives x in seconds and avg, min, max in time order", () => {
    const columns = aggregateColumns(
      [bucket("2025-01-15T10:01:00Z", 2), bucket("2025-01-15T10:00:00Z", 1, 0, 5)],
      60,
    );
    expect(columns).toEqual([
      [s("2025-01-15T10:00:00Z"), s("2025-01-15T10:01:00Z")],
      [1, 2],
      [0, 1],
      [5, 3],
    ]);
  });

  it("breaks the line and the band over a missing bucket", () => {
    const [x, avg, min, max] = aggregateColumns(
      [bucket("2025-01-15T10:00:00Z", 1), bucket("2025-01-15T10:05:00Z", 2)],
      60,
    );
    expect(x).toEqual([s("2025-01-15T10:00:00Z"), s("2025-01-15T10:01:00Z"), s("2025-01-15T10:05:00Z")]);
    expect(avg).toEqual([1, null, 2]);
    expect(min[1]).toBeNull();
    expect(max[1]).toBeNull();
    expect(countPoints(avg)).toBe(2);
  });

  it("is empty for no buckets", () => {
    expect(aggregateColumns([], 60)).toEqual([[], [], [], []]);
  });
});

describe("forecastColumns", () => {
  const prediction = {
    points: [
      { time: "2025-01-15T10:03:00Z", forecast: 10, lo80: 9, hi80: 11, lo95: 8, hi95: 12 },
      { time: "2025-01-15T10:04:00Z", forecast: 11, lo80: 9.5, hi80: 12.5, lo95: 8.5, hi95: 13.5 },
    ],
  };

  it("draws the forecast and its bands after the history, joined at the last observation", () => {
    const history = [
      bucket("2025-01-15T10:00:00Z", 5),
      bucket("2025-01-15T10:01:00Z", 6),
      bucket("2025-01-15T10:02:00Z", 7),
    ];
    const [x, hist, fc, lo80, hi80, lo95, hi95] = forecastColumns(history, prediction);
    expect(x).toEqual(["10:00", "10:01", "10:02", "10:03", "10:04"].map((t) => s(`2025-01-15T${t}:00Z`)));
    expect(hist).toEqual([5, 6, 7, null, null]);
    expect(fc).toEqual([null, null, 7, 10, 11]);
    expect(lo80).toEqual([null, null, 7, 9, 9.5]);
    expect(hi80).toEqual([null, null, 7, 11, 12.5]);
    expect(lo95).toEqual([null, null, 7, 8, 8.5]);
    expect(hi95).toEqual([null, null, 7, 12, 13.5]);
    // x strictly increasing, as uPlot needs.
    expect(x.every((v, i) => i === 0 || v > x[i - 1])).toBe(true);
  });

  it("drops history at or after the forecast's first time", () => {
    const history = [bucket("2025-01-15T10:02:00Z", 7), bucket("2025-01-15T10:03:00Z", 99)];
    const [x, hist] = forecastColumns(history, prediction);
    expect(x).toHaveLength(3);
    expect(hist).toEqual([7, null, null]);
  });

  it("shows a forecast without history, and history without a forecast", () => {
    expect(countPoints(forecastColumns([], prediction)[2])).toBe(2);
    const [, hist, fc] = forecastColumns([bucket("2025-01-15T10:02:00Z", 7)], { points: [] });
    expect(hist).toEqual([7]);
    expect(fc).toEqual([null]);
  });
});

describe("energyColumns", () => {
  it("gives power and cumulative energy per window", () => {
    const w = (start: string, avg: number, cumulative: number) => ({
      start,
      end: start,
      avg_power_w: avg,
      peak_power_w: avg * 2,
      energy_wh: avg / 60,
      cumulative_energy_wh: cumulative,
    });
    expect(energyColumns([w("2025-01-15T10:01:00Z", 120, 4), w("2025-01-15T10:00:00Z", 60, 1)])).toEqual([
      [s("2025-01-15T10:00:00Z"), s("2025-01-15T10:01:00Z")],
      [60, 120],
      [120, 240],
      [1, 4],
    ]);
  });
});

describe("metricColumns", () => {
  const row = (device_id: string, metrics: Record<string, number>) => ({ device_id, site_id: null, last_ts: null, metrics });
  it("puts the chosen metric first, then the most reported", () => {
    const devices = [row("a", { temp: 1, power_w: 2 }), row("b", { power_w: 3, cpu: 1 }), row("c", { power_w: 1, temp: 2 })];
    expect(metricColumns(devices, "cpu")).toEqual(["cpu", "power_w", "temp"]);
    expect(metricColumns(devices, "absent", 2)).toEqual(["power_w", "temp"]);
  });
});
