import { describe, expect, it } from "vitest";
import { formatAge, formatLocal, formatUtc, fromLocalInput, parseApiTime, toLocalInput } from "../src/lib/time";

const T = Date.UTC(2025, 0, 15, 10, 0, 0);

describe("parseApiTime", () => {
  it("reads the API's ISO times and the alert payload's zoneless UTC", () => {
    expect(parseApiTime("2025-01-15T10:00:00Z")).toBe(T);
    expect(parseApiTime("2025-01-15T10:00:00.250Z")).toBe(T + 250);
    expect(parseApiTime("2025-01-15T11:00:00+01:00")).toBe(T);
    expect(parseApiTime("2025-01-15 10:00:00")).toBe(T);
    expect(parseApiTime("2025-01-15 10:00:00.123456")).toBe(T + 123);
    expect(parseApiTime(T)).toBe(T);
    expect(parseApiTime(null)).toBeNaN();
    expect(parseApiTime("soon")).toBeNaN();
  });
});

describe("formatting", () => {
  it("spells UTC for the title and the viewer's zone for the text", () => {
    expect(formatUtc(T)).toBe("2025-01-15 10:00:00 UTC");
    expect(formatLocal(T, "UTC")).toBe("15/01/2025, 10:00:00 UTC");
    expect(formatLocal(T, "Asia/Tokyo")).toBe("15/01/2025, 19:00:00 GMT+9");
    expect(formatLocal(T, "America/New_York")).toContain("05:00:00");
    expect(formatLocal(NaN)).toBe("—");
  });

  it("round-trips datetime-local values in the viewer's zone", () => {
    expect(fromLocalInput(toLocalInput(T))).toBe(T);
    expect(fromLocalInput("")).toBeNaN();
  });

  it("gives ages in readable units", () => {
    expect(formatAge(0.25)).toBe("250 ms");
    expect(formatAge(4.5)).toBe("4.5 s");
    expect(formatAge(90)).toBe("90 s");
    expect(formatAge(600)).toBe("10.0 min");
    expect(formatAge(7200)).toBe("2.0 h");
    expect(formatAge(null)).toBe("—");
  });
});
