// The API's errors: `{"error": {"code", "message", "field"?}}` (app/core/errors.py).

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field: string | null = null,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** The ApiError an answer's status and (parsed) body describe. */
export function apiError(status: number, body: unknown): ApiError {
  if (body && typeof body === "object") {
    const error = (body as { error?: unknown }).error;
    if (error && typeof error === "object") {
      const e = error as { code?: unknown; message?: unknown; field?: unknown };
      return new ApiError(
        status,
        typeof e.code === "string" ? e.code : "error",
        typeof e.message === "string" ? e.message : `HTTP ${status}`,
        typeof e.field === "string" ? e.field : null,
      );
    }
    // FastAPI's default shape, should a route answer with it.
    const detail = (body as { detail?: unknown }).detail;
    if (Array.isArray(detail) && detail.length > 0) {
      const first = detail[0] as { loc?: unknown[]; msg?: string };
      const loc = Array.isArray(first.loc) ? first.loc.slice(1).map(String).join(".") : "";
      return new ApiError(status, "invalid", first.msg ?? "is invalid", loc || null);
    }
    if (typeof detail === "string") return new ApiError(status, "error", detail);
  }
  return new ApiError(status, "error", `HTTP ${status}`);
}

export interface FieldErrors {
  /** Message per form field. */
  fields: Record<string, string>;
  /** What names no field of the form (shown above it). */
  form: string | null;
}

/**
 * Where a form shows an error: next to the field it names (the first segment of a dotted
 * field, so "forecast.horizon" lands on "forecast"), else at the top of the form.
 */
export function fieldErrors(error: unknown, formFields: readonly string[]): FieldErrors {
  if (error instanceof ApiError) {
    const field = error.field?.split(".")[0] ?? null;
    if (field !== null && formFields.includes(field)) {
      return { fields: { [field]: error.message }, form: null };
    }
    const prefix = error.field ? `${error.field}: ` : "";
    return { fields: {}, form: `${prefix}${error.message}` };
  }
  return { fields: {}, form: error instanceof Error ? error.message : String(error) };
}

/** One line for an error shown as a message. */
export function describeError(error: unknown): string {
  if (error instanceof ApiError) {
    const where = error.field ? ` (${error.field})` : "";
    return `${error.message}${where} — HTTP ${error.status}`;
  }
  if (error instanceof Error) return error.message;
  return String(error);
}
