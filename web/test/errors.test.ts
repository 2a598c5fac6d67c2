import { describe, expect, it } from "vitest";
import { formBody } from "../src/components/Generator";
import { ApiError, apiError, describeError, fieldErrors } from "../src/lib/errors";

const FIELDS = ["rate", "burst_seconds", "burst_every_s", "paused"];

describe("apiError", () => {
  it("reads the API's error body", () => {
    const e = apiError(422, { error: { code: "invalid", message: "must not exceed burst_every_s", field: "burst_seconds" } });
    expect(e).toBeInstanceOf(ApiError);
    expect([e.status, e.code, e.message, e.field]).toEqual([422, "invalid", "must not exceed burst_every_s", "burst_seconds"]);
  });

  it("reads FastAPI's default body and anything else", () => {
    const e = apiError(422, { detail: [{ loc: ["body", "rate"], msg: "Input should be greater than or equal to 0" }] });
    expect(e.field).toBe("rate");
    expect(apiError(503, "oops").message).toBe("HTTP 503");
    expect(apiError(404, { detail: "Not Found" }).message).toBe("Not Found");
  });
});

describe("fieldErrors", () => {
  it("puts a message next to the field the server names", () => {
    const e = new ApiError(422, "invalid", "Input should be greater than or equal to 0", "rate");
    expect(fieldErrors(e, FIELDS)).toEqual({ fields: { rate: "Input should be greater than or equal to 0" }, form: null });
  });

  it("maps a nested field to its top-level input", () => {
    const e = new ApiError(422, "invalid", "bad", "rate.0");
    expect(fieldErrors(e, FIELDS).fields).toEqual({ rate: "bad" });
  });

  it("shows what names no field above the form", () => {
    expect(fieldErrors(new ApiError(422, "invalid", "Extra inputs are not permitted", "colour"), FIELDS)).toEqual({
      fields: {},
      form: "colour: Extra inputs are not permitted",
    });
    expect(fieldErrors(new ApiError(503, "unavailable", "retry later"), FIELDS).form).toBe("retry later");
    expect(fieldErrors(new Error("network"), FIELDS).form).toBe("network");
  });

  it("describes errors in one line", () => {
    expect(describeError(new ApiError(404, "not_found", "no such device", "device_id"))).toBe(
      "no such device (device_id) — HTTP 404",
    );
  });
});

describe("formBody", () => {
  it("sends numbers as numbers, booleans as booleans, the unreadable as typed", () => {
    expect(formBody({ rate: "12.5", batch_size: "500", paused: true, burst_seconds: "", burst_every_s: "ten" })).toEqual({
      rate: 12.5,
      batch_size: 500,
      paused: true,
      burst_seconds: null,
      burst_every_s: "ten",
    });
  });
});
