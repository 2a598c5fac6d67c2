import { describe, expect, it } from "vitest";
import {
  bucketCount,
  chooseInterval,
  durationSeconds,
  formatDuration,
  presetRange,
  rangeKey,
  resolveRange,
} from "../src/lib/interval";

const INTERVALS = ["1m", "5m", "15m", "1h", "1d"];
const H = 3_600_000;
const T0 = Date.UTC(2025, 0, 15, 10, 0, 0);

describe("durations", () => {
  it("reads and spells whole minutes", () => {
    expect(durationSeconds("90s")).toBe(90);
    expect(durationSeconds("15m")).toBe(900);
    expect(durationSeconds("24h")).toBe(86400);
    expect(durationSeconds("7d")).toBe(604800);
    expect(() => durationSeconds("soon")).toThrow();
    expect(formatDuration(60)).toBe("1m");
    expect(formatDuration(5400)).toBe("90m");
    expect(formatDuration(7200)).toBe("2h");
    expect(formatDuration(172800)).toBe("2d");
  });
});

describe("chooseInterval", () => {
  it("takes the finest interval that stays under max_points", () => {
    expect(chooseInterval(T0, T0 + H, 2000, INTERVALS)).toEqual({ interval: "1m", seconds: 60, points: 60 });
    // 24 h at 1 m is 1,440 buckets: fine under 2,000, too many under 1,000.
    expect(chooseInterval(T0, T0 + 24 * H, 2000, INTERVALS).interval).toBe("1m");
    expect(chooseInterval(T0, T0 + 24 * H, 1000, INTERVALS).interval).toBe("5m");
    expect(chooseInterval(T0, T0 + 7 * 24 * H, 2000, INTERVALS).interval).toBe("15m");
  });

  it("counts the epoch-aligned buckets an unaligned range touches", () => {
    expect(bucketCount(T0 + 30_000, T0 + 30_000 + H, 60)).toBe(61);
    // 60 buckets fit max 60 when aligned, not when the range straddles one more.
    expect(chooseInterval(T0, T0 + H, 60, INTERVALS).interval).toBe("1m");
    expect(chooseInterval(T0 + 30_000, T0 + 30_000 + H, 60, INTERVALS).interval).toBe("5m");
  });

  it("never goes past max_points, using multiples of the coarsest interval", () => {
    for (const maxPoints of [1, 2, 10, 100, 3000]) {
      for (const span of [15 * 60_000, H, 6 * H, 24 * H, 7 * 24 * H, 400 * 24 * H]) {
        const choice = chooseInterval(T0 + 12_345, T0 + 12_345 + span, maxPoints, INTERVALS);
        expect(choice.points).toBeLessThanOrEqual(maxPoints);
        expect(choice.seconds % 60).toBe(0);
        expect(durationSeconds(choice.interval)).toBe(choice.seconds);
      }
    }
    expect(chooseInterval(T0, T0 + 400 * 24 * H, 100, INTERVALS).interval).toBe("5d");
  });

  it("ignores offered intervals that are not whole minutes, in any order", () => {
    expect(chooseInterval(T0, T0 + H, 2000, ["1h", "30s", "5m"]).interval).toBe("5m");
  });
});

describe("ranges", () => {
  it("rolls presets with the clock and keeps custom ranges", () => {
    expect(presetRange("6h", T0)).toEqual({ fromMs: T0 - 6 * H, toMs: T0, preset: "6h" });
    expect(resolveRange({ fromMs: 0, toMs: 0, preset: "15m" }, T0).fromMs).toBe(T0 - 15 * 60_000);
    const custom = { fromMs: 1, toMs: 2, preset: null };
    expect(resolveRange(custom, T0)).toBe(custom);
    expect(rangeKey(custom)).toBe("1-2");
    expect(rangeKey({ fromMs: 5, toMs: 9, preset: "7d" })).toBe("7d");
  });
});
